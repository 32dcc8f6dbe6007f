/**
 * Decodes a PNG file into RGBA pixels, from the format's specification (IHDR, IDAT through zlib, the five row
 * filters), so that a test can look at the pixels of the file llamapro wrote rather than trust the writer.
 * Handles the non-interlaced 8-bit RGB and RGBA files that resvg writes; anything else is an error.
 */
import { inflateSync } from 'node:zlib'

export interface DecodedPng {
  width: number
  height: number
  /** RGBA, row by row. */
  pixels: Uint8Array
}

export function decodePng(file: Uint8Array): DecodedPng {
  const bytes = Buffer.from(file)
  if (bytes.readUInt32BE(0) !== 0x89504e47 || bytes.readUInt32BE(4) !== 0x0d0a1a0a)
    throw new Error('not a PNG signature')
  let [width, height, channels] = [0, 0, 0]
  const data: Buffer[] = []
  for (let at = 8; at < bytes.length; ) {
    const length = bytes.readUInt32BE(at)
    const type = bytes.toString('latin1', at + 4, at + 8)
    const body = bytes.subarray(at + 8, at + 8 + length)
    if (type === 'IHDR') {
      ;[width, height] = [body.readUInt32BE(0), body.readUInt32BE(4)]
      const [depth, color, interlace] = [body[8], body[9], body[12]]
      if (depth !== 8 || (color !== 6 && color !== 2) || interlace !== 0) {
        throw new Error(`unsupported PNG: bit depth ${depth}, color type ${color}, interlace ${interlace}`)
      }
      channels = color === 6 ? 4 : 3
    } else if (type === 'IDAT') data.push(body)
    else if (type === 'IEND') break
    at += 12 + length
  }
  const raw = inflateSync(Buffer.concat(data))
  const stride = width * channels
  const rows = new Uint8Array(height * stride)
  for (let y = 0; y < height; y++) {
    const filter = raw[y * (stride + 1)]!
    const line = raw.subarray(y * (stride + 1) + 1, (y + 1) * (stride + 1))
    for (let i = 0; i < stride; i++) {
      const left = i >= channels ? rows[y * stride + i - channels]! : 0
      const up = y > 0 ? rows[(y - 1) * stride + i]! : 0
      const upLeft = y > 0 && i >= channels ? rows[(y - 1) * stride + i - channels]! : 0
      const paeth = () => {
        const p = left + up - upLeft
        const [pa, pb, pc] = [Math.abs(p - left), Math.abs(p - up), Math.abs(p - upLeft)]
        return pa <= pb && pa <= pc ? left : pb <= pc ? up : upLeft
      }
      const predictor = [0, left, up, (left + up) >> 1, 0][filter]
      if (predictor === undefined) throw new Error(`unknown PNG row filter ${filter}`)
      rows[y * stride + i] = (line[i]! + (filter === 4 ? paeth() : predictor)) & 0xff
    }
  }
  if (channels === 4) return { width, height, pixels: rows }
  const rgba = new Uint8Array(width * height * 4)
  for (let p = 0; p < width * height; p++) rgba.set([...rows.subarray(p * 3, p * 3 + 3), 255], p * 4)
  return { width, height, pixels: rgba }
}
