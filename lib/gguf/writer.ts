/** Encodes a GGUF v3 header (metadata + tensor infos), laying tensors out at aligned offsets. */
import type { GgufMetadataValue } from './llama-model.js'
import { GGML_TYPES } from './ggml-types.js'

export interface GgufTensorLayoutInput {
  name: string
  /** Innermost first, as GGUF stores them. */
  dims: number[]
  type: number
}

export interface EncodedGguf {
  header: Uint8Array
  /** Absolute offset of the data section (a multiple of the alignment). */
  dataStart: number
  /** Absolute offset of each tensor's data, in input order. */
  offsets: number[]
  fileSize: number
}

export const GGUF_ALIGNMENT = 32

const alignUp = (n: number, a: number) => Math.ceil(n / a) * a

export function encodeGguf(
  metadata: readonly [string, GgufMetadataValue][],
  tensors: readonly GgufTensorLayoutInput[],
): EncodedGguf {
  const parts: Buffer[] = []
  const u32 = (v: number) => {
    const b = Buffer.alloc(4)
    b.writeUInt32LE(v)
    parts.push(b)
  }
  const i32 = (v: number) => {
    const b = Buffer.alloc(4)
    b.writeInt32LE(v)
    parts.push(b)
  }
  const f32 = (v: number) => {
    const b = Buffer.alloc(4)
    b.writeFloatLE(v)
    parts.push(b)
  }
  const u64 = (v: number) => {
    const b = Buffer.alloc(8)
    b.writeBigUInt64LE(BigInt(v))
    parts.push(b)
  }
  const str = (s: string) => {
    const b = Buffer.from(s, 'utf8')
    u64(b.length)
    parts.push(b)
  }
  parts.push(Buffer.from('GGUF', 'latin1'))
  u32(3)
  u64(tensors.length)
  u64(metadata.length)
  for (const [key, v] of metadata) {
    str(key)
    switch (v.type) {
      case 'string':
        u32(8)
        str(v.value)
        break
      case 'u32':
        u32(4)
        u32(v.value)
        break
      case 'f32':
        u32(6)
        f32(v.value)
        break
      case 'bool':
        u32(7)
        parts.push(Buffer.from([v.value ? 1 : 0]))
        break
      case 'strings':
        u32(9)
        u32(8)
        u64(v.value.length)
        for (const s of v.value) str(s)
        break
      case 'f32s':
        u32(9)
        u32(6)
        u64(v.value.length)
        for (const x of v.value) f32(x)
        break
      case 'i32s':
        u32(9)
        u32(5)
        u64(v.value.length)
        for (const x of v.value) i32(x)
        break
    }
  }
  const offsets: number[] = []
  let cursor = 0
  for (const t of tensors) {
    const type = GGML_TYPES.get(t.type)!
    str(t.name)
    u32(t.dims.length)
    for (const d of t.dims) u64(d)
    u32(t.type)
    cursor = alignUp(cursor, GGUF_ALIGNMENT)
    u64(cursor)
    offsets.push(cursor)
    cursor += (t.dims.reduce((a, b) => a * b, 1) / type.blockSize) * type.blockBytes
  }
  const body = Buffer.concat(parts)
  const dataStart = alignUp(body.length, GGUF_ALIGNMENT)
  const header = Buffer.alloc(dataStart)
  body.copy(header)
  return { header, dataStart, offsets: offsets.map((o) => o + dataStart), fileSize: dataStart + cursor }
}
