/**
 * The GGUF container (llama.cpp), strictly: magic "GGUF", version 2 or 3, u64 tensor count, u64 metadata count,
 * typed key/values, tensor infos, then the data aligned to general.alignment. Every length, count, type, offset and
 * size is checked here, in TypeScript, before native code is given a single offset: a malformed or truncated file
 * is a GgufError naming the file and what is wrong, never a crash. Only the metadata and tensor infos are read;
 * tensor data stays on disk.
 */
import { open } from 'node:fs/promises'
import { LlamaproError } from '../errors.js'
import { GGML_TYPES, ggmlTypeName } from './ggml-types.js'

export class GgufError extends LlamaproError {
  constructor(path: string, message: string) {
    super('LLAMAPRO_GGUF', `${path}: ${message}`)
    this.name = 'GgufError'
  }
}

/** GGUF value types (gguf.md). */
export enum ValueType {
  U8 = 0,
  I8 = 1,
  U16 = 2,
  I16 = 3,
  U32 = 4,
  I32 = 5,
  F32 = 6,
  BOOL = 7,
  STRING = 8,
  ARRAY = 9,
  U64 = 10,
  I64 = 11,
  F64 = 12,
}

const SCALAR_SIZES: Record<number, number> = { 0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8 }
const TYPE_NAMES = ['u8', 'i8', 'u16', 'i16', 'u32', 'i32', 'f32', 'bool', 'string', 'array', 'u64', 'i64', 'f64']

/**
 * Numeric arrays stay typed arrays (a 150k-entry score list is not 150k boxed numbers); 64-bit ones as bigint arrays.
 */
export type GgufArray =
  | Uint8Array
  | Int8Array
  | Uint16Array
  | Int16Array
  | Uint32Array
  | Int32Array
  | Float32Array
  | Float64Array
  | BigUint64Array
  | BigInt64Array
  | boolean[]
  | string[]
  | GgufValue[]
export type GgufValue = number | bigint | boolean | string | GgufArray

export interface GgufMetadataEntry {
  type: ValueType
  /** For arrays: the element type. */
  itemType?: ValueType
  value: GgufValue
}

export interface GgufTensorInfo {
  name: string
  /** As GGUF stores them: innermost (contiguous) dimension first. */
  dims: number[]
  type: number
  /** Relative to the data section. */
  offset: number
  nbytes: number
}

export interface GgufFile {
  path: string
  fileSize: number
  version: number
  alignment: number
  /** Absolute offset of the data section. */
  dataStart: number
  metadata: Map<string, GgufMetadataEntry>
  tensors: GgufTensorInfo[]
}

/** Headers larger than this are refused (the largest real vocabularies take a few tens of MB). */
export const MAX_GGUF_HEADER_BYTES = 1 << 30
const MAX_DIMS = 4
const MAX_NAME_BYTES = 64 * 1024
const MAX_ARRAY_DEPTH = 4

class NeedMore extends Error {}

class Cursor {
  pos = 0
  constructor(
    readonly buf: Buffer,
    readonly complete: boolean,
    readonly label: string,
  ) {}

  need(n: number, what: string): void {
    if (n <= this.buf.length - this.pos) return
    if (!this.complete) throw new NeedMore()
    throw new GgufError(
      this.label,
      `truncated: ${what} at byte ${this.pos} needs ${n} bytes, the file ends at ${this.buf.length}`,
    )
  }

  /** How many bytes remain in the whole file (for count sanity checks). */
  u8(what: string): number {
    this.need(1, what)
    return this.buf[this.pos++]!
  }
  u32(what: string): number {
    this.need(4, what)
    const v = this.buf.readUInt32LE(this.pos)
    this.pos += 4
    return v
  }
  u64(what: string): bigint {
    this.need(8, what)
    const v = this.buf.readBigUInt64LE(this.pos)
    this.pos += 8
    return v
  }
  bytes(n: number, what: string): Buffer {
    this.need(n, what)
    const out = this.buf.subarray(this.pos, this.pos + n)
    this.pos += n
    return out
  }
}

const utf8 = new TextDecoder('utf-8', { fatal: true })

export interface ReadGgufOptions {
  /** Start by reading this many bytes of the file (grown as needed); tests use small values. */
  initialBytes?: number
}

/** Reads and validates the header (metadata and tensor infos) of a GGUF file; tensor data is not read. */
export async function readGgufFile(path: string, options: ReadGgufOptions = {}): Promise<GgufFile> {
  let handle
  try {
    handle = await open(path, 'r')
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code
    throw new GgufError(path, code === 'ENOENT' ? 'file not found' : `cannot open (${code ?? String(error)})`)
  }
  try {
    const { size: fileSize } = await handle.stat()
    let want = Math.min(fileSize, options.initialBytes ?? 8 << 20)
    for (;;) {
      const buf = Buffer.alloc(want)
      let done = 0
      while (done < want) {
        const { bytesRead } = await handle.read(buf, done, want - done, done)
        if (bytesRead === 0) throw new GgufError(path, `the file shrank while being read (${done} of ${want} bytes)`)
        done += bytesRead
      }
      try {
        return parseGguf(path, buf, fileSize)
      } catch (error) {
        if (!(error instanceof NeedMore)) throw error
        if (want >= MAX_GGUF_HEADER_BYTES)
          throw new GgufError(path, `the header is larger than ${MAX_GGUF_HEADER_BYTES} bytes`)
        want = Math.min(fileSize, want * 4, MAX_GGUF_HEADER_BYTES)
      }
    }
  } finally {
    await handle.close()
  }
}

/**
 * Parses a GGUF header from the first `buf.length` bytes of a file of `fileSize` bytes. Pure, so every rule can be
 * tested on crafted bytes. Throws NeedMore (internal) when `buf` is a prefix that ends inside the header.
 */
export function parseGguf(label: string, bytes: Uint8Array, fileSize: number): GgufFile {
  // Uint8Array in the public signature: the declarations must type-check without @types/node.
  const buf = Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  const c = new Cursor(buf, buf.length >= fileSize, label)
  if (fileSize < 4)
    throw new GgufError(label, `truncated: the file is ${fileSize} bytes; a GGUF file starts with the magic "GGUF"`)
  const magic = c.bytes(4, 'the magic')
  if (magic.toString('latin1') !== 'GGUF') {
    throw new GgufError(
      label,
      `not a GGUF file: it starts with ${JSON.stringify(magic.toString('latin1'))}, not "GGUF"`,
    )
  }
  const version = c.u32('the version')
  if (version === 1)
    throw new GgufError(
      label,
      'GGUF version 1 (32-bit counts, from 2023) is not supported; re-convert it with a current llama.cpp (versions ' +
        '2 and 3 are read)',
    )
  if (version !== 2 && version !== 3) {
    const swapped = ((version & 0xff) << 24) | ((version & 0xff00) << 8) | ((version >>> 8) & 0xff00) | (version >>> 24)
    if (swapped === 2 || swapped === 3)
      throw new GgufError(label, 'this is a big-endian GGUF; only little-endian files are supported')
    throw new GgufError(label, `unknown GGUF version ${version} (valid: 2, 3)`)
  }
  const tensorCount = c.u64('the tensor count')
  const kvCount = c.u64('the metadata count')
  // Each tensor info takes at least 8 (name length) + 4 + 8 + 4 + 8 bytes, each key/value at least 8 + 4 + 1.
  if (tensorCount * 32n > BigInt(fileSize))
    throw new GgufError(label, `tensor count ${tensorCount} cannot fit in a ${fileSize}-byte file`)
  if (kvCount * 13n > BigInt(fileSize))
    throw new GgufError(label, `metadata count ${kvCount} cannot fit in a ${fileSize}-byte file`)

  const string = (what: string): string => {
    const n = c.u64(`the length of ${what}`)
    if (n > BigInt(fileSize - c.pos))
      throw new GgufError(label, `${what}: length ${n} at byte ${c.pos - 8} runs past the end of the file`)
    const raw = c.bytes(Number(n), what)
    try {
      return utf8.decode(raw)
    } catch {
      throw new GgufError(label, `${what} is not valid UTF-8`)
    }
  }

  const scalar = (type: number, what: string): number | bigint | boolean => {
    const size = SCALAR_SIZES[type]!
    c.need(size, what)
    const at = c.pos
    c.pos += size
    switch (type) {
      case ValueType.U8:
        return buf.readUInt8(at)
      case ValueType.I8:
        return buf.readInt8(at)
      case ValueType.U16:
        return buf.readUInt16LE(at)
      case ValueType.I16:
        return buf.readInt16LE(at)
      case ValueType.U32:
        return buf.readUInt32LE(at)
      case ValueType.I32:
        return buf.readInt32LE(at)
      case ValueType.F32:
        return buf.readFloatLE(at)
      case ValueType.F64:
        return buf.readDoubleLE(at)
      case ValueType.BOOL: {
        const b = buf.readUInt8(at)
        if (b > 1) throw new GgufError(label, `${what}: a bool must be 0 or 1, got ${b}`)
        return b === 1
      }
      case ValueType.U64:
        return small(buf.readBigUInt64LE(at))
      default:
        return small(buf.readBigInt64LE(at))
    }
  }

  const checkType = (type: number, what: string): ValueType => {
    if (!Number.isInteger(type) || type < 0 || type > 12) {
      throw new GgufError(label, `${what}: unknown value type ${type} (valid: 0..12, ${TYPE_NAMES.join(', ')})`)
    }
    return type as ValueType
  }

  const value = (type: ValueType, what: string, depth: number): { value: GgufValue; itemType?: ValueType } => {
    if (type === ValueType.STRING) return { value: string(what) }
    if (type !== ValueType.ARRAY) return { value: scalar(type, what) }
    if (depth >= MAX_ARRAY_DEPTH) throw new GgufError(label, `${what}: arrays nested deeper than ${MAX_ARRAY_DEPTH}`)
    const itemType = checkType(c.u32(`the element type of ${what}`), what)
    const count = c.u64(`the length of ${what}`)
    const minSize = itemType === ValueType.STRING ? 8 : itemType === ValueType.ARRAY ? 12 : SCALAR_SIZES[itemType]!
    if (count * BigInt(minSize) > BigInt(fileSize - c.pos)) {
      throw new GgufError(
        label,
        `${what}: an array of ${count} ${TYPE_NAMES[itemType]} values cannot fit in the rest of the file`,
      )
    }
    const n = Number(count)
    if (itemType !== ValueType.STRING && itemType !== ValueType.ARRAY && itemType !== ValueType.BOOL) {
      const size = SCALAR_SIZES[itemType]!
      const raw = c.bytes(n * size, what)
      const copy = new Uint8Array(raw) // aligned copy for the typed-array view
      const views: Record<number, (b: ArrayBuffer) => GgufArray> = {
        [ValueType.U8]: (b) => new Uint8Array(b),
        [ValueType.I8]: (b) => new Int8Array(b),
        [ValueType.U16]: (b) => new Uint16Array(b),
        [ValueType.I16]: (b) => new Int16Array(b),
        [ValueType.U32]: (b) => new Uint32Array(b),
        [ValueType.I32]: (b) => new Int32Array(b),
        [ValueType.F32]: (b) => new Float32Array(b),
        [ValueType.F64]: (b) => new Float64Array(b),
        [ValueType.U64]: (b) => new BigUint64Array(b),
        [ValueType.I64]: (b) => new BigInt64Array(b),
      }
      return { value: views[itemType]!(copy.buffer), itemType }
    }
    const items: GgufValue[] = []
    for (let i = 0; i < n; i++) items.push(value(itemType, `${what}[${i}]`, depth + 1).value)
    return { value: items as GgufArray, itemType }
  }

  const metadata = new Map<string, GgufMetadataEntry>()
  for (let i = 0n; i < kvCount; i++) {
    const key = string(`metadata key #${i}`)
    if (key.length === 0) throw new GgufError(label, `metadata key #${i} is empty`)
    if (metadata.has(key)) throw new GgufError(label, `metadata key "${key}" appears twice`)
    const type = checkType(c.u32(`the type of "${key}"`), `metadata "${key}"`)
    const { value: v, itemType } = value(type, `metadata "${key}"`, 0)
    metadata.set(key, itemType === undefined ? { type, value: v } : { type, itemType, value: v })
  }

  let alignment = 32
  const align = metadata.get('general.alignment')
  if (align) {
    if (
      align.type !== ValueType.U32 ||
      typeof align.value !== 'number' ||
      align.value === 0 ||
      (align.value & (align.value - 1)) !== 0
    ) {
      throw new GgufError(label, `general.alignment must be a u32 power of two, got ${String(align.value)}`)
    }
    alignment = align.value
  }

  const tensors: GgufTensorInfo[] = []
  const names = new Set<string>()
  for (let i = 0n; i < tensorCount; i++) {
    const name = string(`the name of tensor #${i}`)
    if (name.length === 0) throw new GgufError(label, `tensor #${i} has an empty name`)
    if (name.length > MAX_NAME_BYTES)
      throw new GgufError(label, `tensor #${i}: the name is ${name.length} characters long`)
    if (names.has(name)) throw new GgufError(label, `tensor "${name}" appears twice`)
    names.add(name)
    const nDims = c.u32(`the dimension count of "${name}"`)
    if (nDims < 1 || nDims > MAX_DIMS)
      throw new GgufError(label, `tensor "${name}": ${nDims} dimensions (valid: 1..${MAX_DIMS})`)
    const dims: number[] = []
    let numel = 1n
    for (let d = 0; d < nDims; d++) {
      const n = c.u64(`dimension ${d} of "${name}"`)
      if (n === 0n) throw new GgufError(label, `tensor "${name}": dimension ${d} is 0`)
      numel *= n
      if (numel > BigInt(Number.MAX_SAFE_INTEGER))
        throw new GgufError(label, `tensor "${name}": ${numel} elements is more than any file holds`)
      dims.push(Number(n))
    }
    const typeId = c.u32(`the type of "${name}"`)
    const type = GGML_TYPES.get(typeId)
    if (!type)
      throw new GgufError(
        label,
        `tensor "${name}" is ${ggmlTypeName(typeId)}, which llamapro cannot convert (supported: ` +
          `${[...GGML_TYPES.values()].map((t) => t.name).join(', ')})`,
      )
    if (dims[0]! % type.blockSize !== 0) {
      throw new GgufError(
        label,
        `tensor "${name}": a row of ${dims[0]} values is not a whole number of ${type.name} blocks ` +
          `(${type.blockSize} values)`,
      )
    }
    const offset = c.u64(`the offset of "${name}"`)
    if (offset > BigInt(fileSize))
      throw new GgufError(label, `tensor "${name}": data offset ${offset} is past the end of the file`)
    if (offset % BigInt(alignment) !== 0n)
      throw new GgufError(
        label,
        `tensor "${name}": data offset ${offset} is not a multiple of the alignment ${alignment}`,
      )
    const nbytes = (Number(numel) / type.blockSize) * type.blockBytes
    tensors.push({ name, dims, type: typeId, offset: Number(offset), nbytes })
  }

  const dataStart = Math.ceil(c.pos / alignment) * alignment
  if (tensors.length > 0 && dataStart > fileSize)
    throw new GgufError(label, `truncated: the data section would start at byte ${dataStart}, the file has ${fileSize}`)
  const dataSize = fileSize - dataStart
  const byOffset = [...tensors].sort((a, b) => a.offset - b.offset)
  let end = 0
  let previous = ''
  for (const t of byOffset) {
    if (t.offset < end)
      throw new GgufError(
        label,
        `tensor "${t.name}" (bytes ${t.offset}..${t.offset + t.nbytes} of the data) overlaps "${previous}"`,
      )
    if (t.offset + t.nbytes > dataSize) {
      throw new GgufError(
        label,
        `tensor "${t.name}": bytes ${t.offset}..${t.offset + t.nbytes} of the data run past its end (${dataSize} ` +
          `bytes): truncated file?`,
      )
    }
    end = t.offset + t.nbytes
    previous = t.name
  }
  return { path: label, fileSize, version, alignment, dataStart, metadata, tensors }
}

function small(v: bigint): number | bigint {
  return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v
}

/** Typed access to metadata values, with errors naming the key. */
export class GgufMetadata {
  constructor(readonly file: GgufFile) {}

  has(key: string): boolean {
    return this.file.metadata.has(key)
  }

  #entry(key: string, required: boolean): GgufMetadataEntry | undefined {
    const entry = this.file.metadata.get(key)
    if (!entry && required) throw new GgufError(this.file.path, `metadata key "${key}" is missing`)
    return entry
  }

  string(key: string, required: true): string
  string(key: string, required?: false): string | undefined
  string(key: string, required = false): string | undefined {
    const e = this.#entry(key, required)
    if (!e) return undefined
    if (typeof e.value !== 'string')
      throw new GgufError(this.file.path, `metadata "${key}" must be a string, it is ${TYPE_NAMES[e.type]}`)
    return e.value
  }

  /** A non-negative integer of any integer type. */
  integer(key: string, required: true): number
  integer(key: string, required?: false): number | undefined
  integer(key: string, required = false): number | undefined {
    const e = this.#entry(key, required)
    if (!e) return undefined
    if (
      typeof e.value !== 'number' ||
      !Number.isInteger(e.value) ||
      e.value < 0 ||
      e.type === ValueType.F32 ||
      e.type === ValueType.F64
    ) {
      throw new GgufError(
        this.file.path,
        `metadata "${key}" must be a non-negative integer, got ${String(e.value)} (${TYPE_NAMES[e.type]})`,
      )
    }
    return e.value
  }

  number(key: string): number | undefined {
    const e = this.#entry(key, false)
    if (!e) return undefined
    if (typeof e.value !== 'number' || !Number.isFinite(e.value))
      throw new GgufError(this.file.path, `metadata "${key}" must be a finite number, got ${String(e.value)}`)
    return e.value
  }

  bool(key: string): boolean | undefined {
    const e = this.#entry(key, false)
    if (!e) return undefined
    if (typeof e.value !== 'boolean')
      throw new GgufError(this.file.path, `metadata "${key}" must be a bool, got ${String(e.value)}`)
    return e.value
  }

  strings(key: string, required: true): string[]
  strings(key: string, required?: false): string[] | undefined
  strings(key: string, required = false): string[] | undefined {
    const e = this.#entry(key, required)
    if (!e) return undefined
    if (e.type !== ValueType.ARRAY || e.itemType !== ValueType.STRING)
      throw new GgufError(this.file.path, `metadata "${key}" must be an array of strings`)
    return e.value as string[]
  }

  /** A numeric array as plain numbers. */
  numbers(key: string): number[] | undefined {
    const e = this.#entry(key, false)
    if (!e) return undefined
    const v = e.value
    if (
      e.type !== ValueType.ARRAY ||
      ArrayBuffer.isView(v) === false ||
      v instanceof BigInt64Array ||
      v instanceof BigUint64Array
    ) {
      throw new GgufError(this.file.path, `metadata "${key}" must be an array of numbers`)
    }
    return Array.from(v as ArrayLike<number>)
  }
}
