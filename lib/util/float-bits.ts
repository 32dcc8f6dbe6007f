/**
 * float32 <-> bfloat16 / float16 bit conversions (round to nearest even): adapter merging, test fixtures and
 * comparisons.
 */

export type FloatDtype = 'F32' | 'BF16' | 'F16'

const f32 = new Float32Array(1)
const u32 = new Uint32Array(f32.buffer)

export function toBf16Bits(x: number): number {
  f32[0] = x
  const bits = u32[0]!
  if ((bits & 0x7f800000) === 0x7f800000 && (bits & 0x7fffff) !== 0) return 0x7fc0
  const rounding = 0x7fff + ((bits >>> 16) & 1)
  return ((bits + rounding) >>> 16) & 0xffff
}

export function fromBf16Bits(h: number): number {
  u32[0] = h << 16
  return f32[0]!
}

export function toF16Bits(x: number): number {
  f32[0] = x
  const bits = u32[0]!
  const sign = (bits >>> 16) & 0x8000
  const exp = (bits >>> 23) & 0xff
  let mant = bits & 0x7fffff
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0)
  const e = exp - 127 + 15
  if (e >= 0x1f) return sign | 0x7c00
  if (e <= 0) {
    if (e < -10) return sign
    mant |= 0x800000
    const shift = 14 - e
    let half = mant >>> shift
    const rem = mant & ((1 << shift) - 1)
    const halfway = 1 << (shift - 1)
    if (rem > halfway || (rem === halfway && half & 1)) half++
    return sign | half
  }
  let half = (e << 10) | (mant >>> 13)
  const rem = mant & 0x1fff
  if (rem > 0x1000 || (rem === 0x1000 && half & 1)) half++
  return sign | half
}

export function fromF16Bits(h: number): number {
  const sign = h & 0x8000 ? -1 : 1
  const exp = (h >>> 10) & 0x1f
  const mant = h & 0x3ff
  if (exp === 0) return sign * mant * 2 ** -24
  if (exp === 0x1f) return mant ? NaN : sign * Infinity
  return sign * (1 + mant / 1024) * 2 ** (exp - 15)
}

/** Encodes float32 values as little-endian bytes of `dtype`; `stored` are the values after rounding. */
export function encodeFloats(values: Float32Array, dtype: FloatDtype): { encoded: Uint8Array; stored: Float32Array } {
  if (dtype === 'F32') {
    const copy = Float32Array.from(values)
    return { encoded: new Uint8Array(copy.buffer.slice(0)), stored: copy }
  }
  const out = new Uint16Array(values.length)
  const stored = new Float32Array(values.length)
  for (let i = 0; i < values.length; i++) {
    const bits = dtype === 'BF16' ? toBf16Bits(values[i]!) : toF16Bits(values[i]!)
    out[i] = bits
    stored[i] = dtype === 'BF16' ? fromBf16Bits(bits) : fromF16Bits(bits)
  }
  return { encoded: new Uint8Array(out.buffer), stored }
}

/** Decodes little-endian bytes of `dtype` into float32 values. */
export function decodeFloats(bytes: Uint8Array, dtype: FloatDtype): Float32Array {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  const size = dtype === 'F32' ? 4 : 2
  const out = new Float32Array(bytes.byteLength / size)
  for (let i = 0; i < out.length; i++) {
    if (dtype === 'F32') out[i] = view.getFloat32(i * 4, true)
    else {
      const bits = view.getUint16(i * 2, true)
      out[i] = dtype === 'BF16' ? fromBf16Bits(bits) : fromF16Bits(bits)
    }
  }
  return out
}
