/**
 * Reads a token store (format.ts) by sequence index with positioned reads — the tokens and the per-sequence index
 * (offsets and learned-token counts; none for packed pt blocks) alike — so a training run's memory does not grow
 * with the corpus: a batch costs a few small reads of the index besides its tokens.
 */
import { closeSync, existsSync, fstatSync, openSync, readFileSync, readSync } from 'node:fs'
import { join } from 'node:path'
import { DatasetError } from '../dataset.js'
import { IGNORE_INDEX } from '../preprocess.js'
import {
  IDS_FILE,
  LABELS_FILE,
  MANIFEST_FILE,
  OFFSETS_FILE,
  STORE_FORMAT,
  STORE_VERSION,
  type StoreManifest,
  TARGETS_FILE,
  bytesPerToken,
  ignoreSentinel,
} from './format.js'

/** A list of sequences that can be read one at a time: a store, a part of one, or an array. */
export interface SequenceSource {
  readonly length: number
  /** Tokens of sequence i. */
  lengthOf(i: number): number
  /** Learned tokens of sequence i (labels that are not -100, after the shift). */
  targetsOf(i: number): number
  read(i: number): { ids: Int32Array | number[]; labels: Int32Array | number[] }
}

/** True when `dir` holds a complete store (its manifest is written last). */
export const isStore = (dir: string): boolean => existsSync(join(dir, MANIFEST_FILE))

export function readManifest(dir: string): StoreManifest {
  const path = join(dir, MANIFEST_FILE)
  let manifest: StoreManifest
  try {
    manifest = JSON.parse(readFileSync(path, 'utf8')) as StoreManifest
  } catch (error) {
    throw new DatasetError(`${path}: not a token store manifest (${(error as Error).message})`)
  }
  if (manifest.format !== STORE_FORMAT)
    throw new DatasetError(
      `${dir} is not a llamapro token store (its manifest's format is ${JSON.stringify(manifest.format)})`,
    )
  if (manifest.version !== STORE_VERSION) {
    throw new DatasetError(
      `${dir} is a token store of format version ${manifest.version}; this llamapro reads version ${STORE_VERSION}: ` +
        `delete it (or set overwrite_cache: true) to rebuild it`,
    )
  }
  return manifest
}

export class TokenStore implements SequenceSource {
  readonly manifest: StoreManifest
  readonly length: number
  readonly #bytes: number
  readonly #sentinel: number
  readonly #offsets: number | null
  readonly #targets: number | null
  readonly #ids: number
  readonly #labels: number | null
  #buffer = Buffer.from(new ArrayBuffer(0))
  readonly #small = Buffer.alloc(16)

  private constructor(readonly dir: string) {
    this.manifest = readManifest(dir)
    this.length = this.manifest.sequences
    this.#bytes = bytesPerToken(this.manifest.dtype)
    this.#sentinel = ignoreSentinel(this.manifest.dtype)
    const index = (file: string, bytesEach: number, count: number): number => {
      const fd = openSync(join(dir, file), 'r')
      const size = fstatSync(fd).size
      if (size !== bytesEach * count) {
        closeSync(fd)
        throw new DatasetError(
          `${join(dir, file)}: ${size} bytes where ${count} entries of ${bytesEach} bytes (${bytesEach * count}) ` +
            `belong; the store is damaged, delete it`,
        )
      }
      return fd
    }
    this.#offsets = this.manifest.fixedLength === null ? index(OFFSETS_FILE, 8, this.length + 1) : null
    this.#targets = this.manifest.hasLabels ? index(TARGETS_FILE, 4, this.length) : null
    this.#ids = openSync(join(dir, IDS_FILE), 'r')
    this.#labels = this.manifest.hasLabels ? openSync(join(dir, LABELS_FILE), 'r') : null
  }

  static open(dir: string): TokenStore {
    if (!isStore(dir))
      throw new DatasetError(`${dir} is not a token store (no ${MANIFEST_FILE}: it was never completed)`)
    return new TokenStore(dir)
  }

  /** `bytes` bytes of an index file at `position`, into #small. */
  #readIndex(fd: number, position: number, bytes: number, i: number): Buffer {
    this.#check(i)
    if (readSync(fd, this.#small, 0, bytes, position) !== bytes)
      throw new DatasetError(`${this.dir}: the index of sequence ${i} is cut short; the store is damaged, delete it`)
    return this.#small
  }

  /** Token offset of sequence i and its length. */
  #span(i: number): { start: number; length: number } {
    const fixed = this.manifest.fixedLength
    if (this.#offsets === null) return { start: i * fixed!, length: fixed! }
    const b = this.#readIndex(this.#offsets, i * 8, 16, i)
    const start = b.readDoubleLE(0)
    return { start, length: b.readDoubleLE(8) - start }
  }

  #check(i: number): void {
    if (!(Number.isInteger(i) && i >= 0 && i < this.length))
      throw new RangeError(`sequence ${i} is not in the store (it has ${this.length})`)
  }

  lengthOf(i: number): number {
    this.#check(i)
    return this.#span(i).length
  }

  targetsOf(i: number): number {
    if (this.#targets === null) return this.lengthOf(i) - 1
    return this.#readIndex(this.#targets, i * 4, 4, i).readUInt32LE(0)
  }

  #readTokens(fd: number, i: number, labels: boolean): Int32Array {
    const { start, length: n } = this.#span(i)
    const bytes = n * this.#bytes
    if (this.#buffer.length < bytes) this.#buffer = Buffer.from(new ArrayBuffer(bytes))
    const position = start * this.#bytes
    let got = 0
    while (got < bytes) {
      const read = readSync(fd, this.#buffer, got, bytes - got, position + got)
      if (read === 0)
        throw new DatasetError(
          `${this.dir}: sequence ${i} ends past the end of its file; the store is damaged, delete it`,
        )
      got += read
    }
    const view =
      this.#bytes === 2
        ? new Uint16Array(this.#buffer.buffer, this.#buffer.byteOffset, n)
        : new Uint32Array(this.#buffer.buffer, this.#buffer.byteOffset, n)
    const out = new Int32Array(n)
    for (let t = 0; t < n; t++) {
      const v = view[t]!
      out[t] = labels && v === this.#sentinel ? IGNORE_INDEX : v
    }
    return out
  }

  read(i: number): { ids: Int32Array; labels: Int32Array } {
    this.#check(i)
    const ids = this.#readTokens(this.#ids, i, false)
    return { ids, labels: this.#labels === null ? ids.slice() : this.#readTokens(this.#labels, i, true) }
  }

  close(): void {
    for (const fd of [this.#ids, this.#labels, this.#offsets, this.#targets]) if (fd !== null) closeSync(fd)
  }
}

/** Sequences of `source` at `indices` (a held-out split, one rank's share). */
export class SubsetSource implements SequenceSource {
  constructor(
    private readonly source: SequenceSource,
    readonly indices: Uint32Array,
  ) {}
  get length(): number {
    return this.indices.length
  }
  lengthOf(i: number): number {
    return this.source.lengthOf(this.indices[i]!)
  }
  targetsOf(i: number): number {
    return this.source.targetsOf(this.indices[i]!)
  }
  read(i: number) {
    return this.source.read(this.indices[i]!)
  }
}

/** Positions [start, start + length) of a permutation of `source`: a split of a corpus too large to list. */
export class PermutedRangeSource implements SequenceSource {
  constructor(
    private readonly source: SequenceSource,
    private readonly order: { at(p: number): number },
    private readonly start: number,
    readonly length: number,
  ) {}
  #index(i: number): number {
    if (!(i >= 0 && i < this.length)) throw new RangeError(`sequence ${i} is not in this split (it has ${this.length})`)
    return this.order.at(this.start + i)
  }
  lengthOf(i: number): number {
    return this.source.lengthOf(this.#index(i))
  }
  targetsOf(i: number): number {
    return this.source.targetsOf(this.#index(i))
  }
  read(i: number) {
    return this.source.read(this.#index(i))
  }
}

/** Sequences held in memory (tests, evaluation of a small file, the demo). */
export function arraySource(sequences: readonly { ids: number[]; labels: number[] }[]): SequenceSource {
  return {
    length: sequences.length,
    lengthOf: (i) => sequences[i]!.ids.length,
    targetsOf: (i) => {
      const labels = sequences[i]!.labels
      let n = 0
      for (let t = 1; t < labels.length; t++) if (labels[t] !== IGNORE_INDEX) n++
      return n
    },
    read: (i) => sequences[i]!,
  }
}

/** Several sources one after another (eval_on_each_dataset's stores, counted and read as one eval set). */
export class ConcatSource implements SequenceSource {
  readonly length: number
  readonly #starts: number[]
  constructor(private readonly sources: readonly SequenceSource[]) {
    this.#starts = []
    let total = 0
    for (const source of sources) {
      this.#starts.push(total)
      total += source.length
    }
    this.length = total
  }
  #locate(i: number): [SequenceSource, number] {
    if (!(i >= 0 && i < this.length)) throw new RangeError(`sequence ${i} is not in this set (it has ${this.length})`)
    let k = this.sources.length - 1
    while (this.#starts[k]! > i) k--
    return [this.sources[k]!, i - this.#starts[k]!]
  }
  lengthOf(i: number): number {
    const [source, j] = this.#locate(i)
    return source.lengthOf(j)
  }
  targetsOf(i: number): number {
    const [source, j] = this.#locate(i)
    return source.targetsOf(j)
  }
  read(i: number) {
    const [source, j] = this.#locate(i)
    return source.read(j)
  }
}
