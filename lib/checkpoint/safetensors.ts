/**
 * The safetensors format, strictly: an 8-byte little-endian header length N, N bytes of UTF-8 JSON (possibly
 * space-padded), then the tensor data. Every rule is checked here, in TypeScript, before native code is given a
 * single offset: a malformed file is an error naming the file and the tensor, never a native crash.
 */
import { open } from 'node:fs/promises'
import { LlamaproError } from '../errors.js'
import { SAFETENSORS_DTYPE_SIZES, type SafetensorsDtype, isSafetensorsDtype } from './dtypes.js'
import { StrictJsonError, parseStrictJson } from './strict-json.js'

/** Larger headers are refused, as the reference implementation does. */
export const MAX_HEADER_BYTES = 100_000_000

export interface TensorEntry {
  name: string
  dtype: SafetensorsDtype
  shape: number[]
  /** Byte offsets relative to the start of the data section. */
  begin: number
  end: number
}

export interface SafetensorsHeader {
  /** Absolute offset of the data section: 8 + N. */
  dataStart: number
  metadata: Record<string, string> | null
  /** In data order. */
  tensors: TensorEntry[]
}

export interface SafetensorsFile extends SafetensorsHeader {
  path: string
  fileSize: number
}

export class SafetensorsError extends LlamaproError {
  constructor(path: string, message: string) {
    super('LLAMAPRO_SAFETENSORS', `${path}: ${message}`)
    this.name = 'SafetensorsError'
  }
}

export const numelOf = (shape: readonly number[]): number => shape.reduce((a, b) => a * b, 1)
export const byteLengthOf = (dtype: SafetensorsDtype, shape: readonly number[]): number =>
  numelOf(shape) * SAFETENSORS_DTYPE_SIZES[dtype]

const isNonNegativeInteger = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0

/**
 * Validates a header's JSON text against the data section size. `label` names the file in errors.
 * Pure: no I/O, so every rule can be tested on crafted bytes.
 */
export function parseHeaderJson(
  label: string,
  headerText: string,
  dataSize: number,
): Omit<SafetensorsHeader, 'dataStart'> {
  let json: unknown
  try {
    json = parseStrictJson(headerText)
  } catch (error) {
    const detail = error instanceof StrictJsonError ? error.message : String(error)
    throw new SafetensorsError(label, `the header is not valid JSON (${detail})`)
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    throw new SafetensorsError(
      label,
      'the header must be a JSON object mapping tensor names to {dtype, shape, data_offsets}',
    )
  }
  let metadata: Record<string, string> | null = null
  const tensors: TensorEntry[] = []
  for (const [name, value] of Object.entries(json as Record<string, unknown>)) {
    if (name === '__metadata__') {
      if (typeof value !== 'object' || value === null || Array.isArray(value)) {
        throw new SafetensorsError(label, '__metadata__ must be an object of strings')
      }
      for (const [k, v] of Object.entries(value)) {
        if (typeof v !== 'string')
          throw new SafetensorsError(label, `__metadata__.${k} must be a string, got ${JSON.stringify(v)}`)
      }
      metadata = { ...(value as Record<string, string>) }
      continue
    }
    if (name.length === 0) throw new SafetensorsError(label, 'a tensor has an empty name')
    if (typeof value !== 'object' || value === null || Array.isArray(value)) {
      throw new SafetensorsError(label, `tensor "${name}": entry must be an object with dtype, shape and data_offsets`)
    }
    const entry = value as Record<string, unknown>
    for (const key of Object.keys(entry)) {
      if (key !== 'dtype' && key !== 'shape' && key !== 'data_offsets') {
        throw new SafetensorsError(
          label,
          `tensor "${name}": unknown field "${key}" (valid: dtype, shape, data_offsets)`,
        )
      }
    }
    const { dtype, shape, data_offsets: offsets } = entry
    if (typeof dtype !== 'string' || !isSafetensorsDtype(dtype)) {
      throw new SafetensorsError(
        label,
        `tensor "${name}": unknown dtype ${JSON.stringify(dtype)} (valid: ` +
          `${Object.keys(SAFETENSORS_DTYPE_SIZES).join(', ')})`,
      )
    }
    if (!Array.isArray(shape) || !shape.every(isNonNegativeInteger)) {
      throw new SafetensorsError(
        label,
        `tensor "${name}": shape must be an array of non-negative integers, got ${JSON.stringify(shape)}`,
      )
    }
    if (
      !Array.isArray(offsets) ||
      offsets.length !== 2 ||
      !offsets.every(isNonNegativeInteger) ||
      offsets[0] > offsets[1]
    ) {
      throw new SafetensorsError(
        label,
        `tensor "${name}": data_offsets must be [begin, end] with 0 <= begin <= end, got ${JSON.stringify(offsets)}`,
      )
    }
    const [begin, end] = offsets as [number, number]
    const expected = byteLengthOf(dtype, shape as number[])
    if (end - begin !== expected) {
      throw new SafetensorsError(
        label,
        `tensor "${name}": holds ${end - begin} bytes but ${dtype} ${JSON.stringify(shape)} needs ${expected}`,
      )
    }
    tensors.push({ name, dtype, shape: shape as number[], begin, end })
  }
  tensors.sort((a, b) => a.begin - b.begin || a.end - b.end)
  let cursor = 0
  for (const t of tensors) {
    if (t.begin < cursor) {
      throw new SafetensorsError(
        label,
        `tensor "${t.name}": data_offsets [${t.begin}, ${t.end}] overlap the previous tensor (which ends at ${cursor})`,
      )
    }
    if (t.begin > cursor) {
      throw new SafetensorsError(
        label,
        `tensor "${t.name}": a gap of ${t.begin - cursor} bytes before it (data must be contiguous)`,
      )
    }
    cursor = t.end
  }
  if (cursor > dataSize) {
    const last = tensors[tensors.length - 1]!
    throw new SafetensorsError(
      label,
      `tensor "${last.name}": data_offsets end at ${cursor} but the file holds only ${dataSize} data bytes ` +
        `(truncated file?)`,
    )
  }
  if (cursor < dataSize) {
    throw new SafetensorsError(
      label,
      `${dataSize - cursor} bytes after the last tensor are not described by the header`,
    )
  }
  return { metadata, tensors }
}

/** Reads and validates the header of a safetensors file (the data is not read). */
export async function readSafetensorsHeader(path: string): Promise<SafetensorsFile> {
  let handle
  try {
    handle = await open(path, 'r')
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code
    throw new SafetensorsError(path, code === 'ENOENT' ? 'file not found' : `cannot open (${code ?? String(error)})`)
  }
  try {
    const { size: fileSize } = await handle.stat()
    if (fileSize < 8) {
      throw new SafetensorsError(
        path,
        `truncated: the file is ${fileSize} bytes; a safetensors file starts with an 8-byte header length`,
      )
    }
    const prefix = Buffer.alloc(8)
    await handle.read(prefix, 0, 8, 0)
    const declared = prefix.readBigUInt64LE(0)
    if (declared > BigInt(MAX_HEADER_BYTES)) {
      throw new SafetensorsError(
        path,
        `header length ${declared} is over the ${MAX_HEADER_BYTES}-byte limit (not a safetensors file?)`,
      )
    }
    const headerSize = Number(declared)
    if (8 + headerSize > fileSize) {
      throw new SafetensorsError(
        path,
        `header length ${headerSize} runs past the end of the file (${fileSize} bytes): truncated or not a ` +
          `safetensors file`,
      )
    }
    const headerBytes = Buffer.alloc(headerSize)
    await handle.read(headerBytes, 0, headerSize, 8)
    let text: string
    try {
      text = new TextDecoder('utf-8', { fatal: true }).decode(headerBytes)
    } catch {
      throw new SafetensorsError(path, 'the header is not valid UTF-8')
    }
    const dataStart = 8 + headerSize
    const parsed = parseHeaderJson(path, text, fileSize - dataStart)
    return { path, fileSize, dataStart, ...parsed }
  } finally {
    await handle.close()
  }
}

export interface HeaderLayoutInput {
  name: string
  dtype: SafetensorsDtype
  shape: readonly number[]
}

export interface EncodedHeader {
  /** The 8-byte length followed by the space-padded JSON: write these bytes first. */
  bytes: Uint8Array
  /** Where each tensor's bytes go, relative to the end of `bytes`; same order as the input. */
  layout: TensorEntry[]
  dataSize: number
}

/**
 * Builds the header for tensors written back to back in the given order, with `{"format": "pt"}` metadata (what
 * transformers expects), padded with spaces so the data starts at a multiple of 8 bytes.
 */
export function encodeSafetensorsHeader(
  tensors: readonly HeaderLayoutInput[],
  metadata: Record<string, string> = { format: 'pt' },
): EncodedHeader {
  const header: Record<string, unknown> = { __metadata__: metadata }
  const layout: TensorEntry[] = []
  const names = new Set<string>()
  let offset = 0
  for (const t of tensors) {
    if (names.has(t.name)) throw new LlamaproError('LLAMAPRO_SAFETENSORS', `tensor "${t.name}" is written twice`)
    names.add(t.name)
    const size = byteLengthOf(t.dtype, t.shape)
    layout.push({ name: t.name, dtype: t.dtype, shape: [...t.shape], begin: offset, end: offset + size })
    header[t.name] = { dtype: t.dtype, shape: [...t.shape], data_offsets: [offset, offset + size] }
    offset += size
  }
  let json = Buffer.from(JSON.stringify(header), 'utf8')
  const padded = Math.ceil(json.length / 8) * 8
  if (padded !== json.length) json = Buffer.concat([json, Buffer.alloc(padded - json.length, 0x20)])
  const bytes = Buffer.alloc(8 + json.length)
  bytes.writeBigUInt64LE(BigInt(json.length), 0)
  json.copy(bytes, 8)
  return { bytes, layout, dataSize: offset }
}

/**
 * Larger dtypes first, then by name: with the header padded to 8 bytes, every tensor then starts at a multiple of
 * its element size, so readers can map it without copying (safetensors' own serializer orders files this way).
 */
export function safetensorsOrder<T extends { name: string; dtype: SafetensorsDtype }>(tensors: readonly T[]): T[] {
  return [...tensors].sort(
    (a, b) =>
      SAFETENSORS_DTYPE_SIZES[b.dtype] - SAFETENSORS_DTYPE_SIZES[a.dtype] ||
      (a.name < b.name ? -1 : a.name > b.name ? 1 : 0),
  )
}
