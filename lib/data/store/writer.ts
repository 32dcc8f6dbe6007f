/**
 * Writes a token store (format.ts) sequence by sequence, with bounded memory: each file is buffered in a few MiB
 * and appended. Everything goes to `<dir>.tmp-<pid>-<random>`; commit() writes the manifest and renames the folder
 * into place, so a killed build leaves only a temporary folder that no run reads (and the next build of the same
 * store removes it once its process is gone). Disk full is an error naming the folder and the bytes still needed.
 */
import { type FileHandle, mkdir, open, rename, rm, statfs, writeFile } from 'node:fs/promises'
import { existsSync } from 'node:fs'
import { endianness } from 'node:os'
import { basename, dirname, join } from 'node:path'
import { DatasetError } from '../dataset.js'
import { IGNORE_INDEX } from '../preprocess.js'
import { VERSION } from '../../version.js'
import {
  IDS_FILE,
  LABELS_FILE,
  MANIFEST_FILE,
  OFFSETS_FILE,
  STORE_FORMAT,
  STORE_VERSION,
  type StoreManifest,
  type StoreTotals,
  TARGETS_FILE,
  type TokenDtype,
  bytesPerToken,
  ignoreSentinel,
} from './format.js'

const BUFFER_BYTES = 4 << 20

class BufferedFile {
  #buffer = Buffer.from(new ArrayBuffer(BUFFER_BYTES))
  #used = 0
  written = 0
  private constructor(
    readonly path: string,
    private readonly handle: FileHandle,
    private readonly onFull: (error: NodeJS.ErrnoException, path: string) => never,
  ) {}

  static async create(
    path: string,
    onFull: (error: NodeJS.ErrnoException, path: string) => never,
  ): Promise<BufferedFile> {
    return new BufferedFile(path, await open(path, 'wx'), onFull)
  }

  /** Room for `bytes` more bytes in the buffer, flushing it first when needed. */
  async reserve(bytes: number): Promise<Buffer> {
    if (this.#used + bytes > this.#buffer.length) await this.flush()
    if (bytes > this.#buffer.length) this.#buffer = Buffer.from(new ArrayBuffer(bytes))
    return this.#buffer
  }

  get used(): number {
    return this.#used
  }
  advance(bytes: number): void {
    this.#used += bytes
  }

  async flush(): Promise<void> {
    if (this.#used === 0) return
    try {
      let offset = 0
      while (offset < this.#used) {
        const { bytesWritten } = await this.handle.write(this.#buffer, offset, this.#used - offset)
        offset += bytesWritten
      }
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOSPC') this.onFull(error as NodeJS.ErrnoException, this.path)
      throw new DatasetError(
        `${this.path}: cannot write the token store ` +
          `(${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`,
      )
    }
    this.written += this.#used
    this.#used = 0
  }

  async close(): Promise<void> {
    await this.flush()
    await this.handle.sync()
    await this.handle.close()
  }

  async discard(): Promise<void> {
    await this.handle.close().catch(() => undefined)
  }
}

export interface StoreWriterOptions {
  dtype: TokenDtype
  /** Labels equal ids (stage pt): no labels.bin, no targets.bin. */
  labelsAreIds: boolean
  /** Every sequence will have this length (packed pt blocks): no offsets.bin, unless one does not. */
  fixedLength: number | null
  /** Bytes the whole store will need, estimated from what is written so far (for the disk-full message). */
  estimateTotalBytes?: () => number
}

/** The temporary folders of a store folder `dir` that a build in process `pid` would use. */
export const temporaryName = (dir: string) =>
  join(dirname(dir), `.${basename(dir)}.tmp-${process.pid}-${Date.now().toString(36)}`)
const TEMPORARY = /^\.(.+)\.tmp-(\d+)-[0-9a-z]+$/

/** Removes temporaries of `dir` whose building process is gone (killed while building). */
export async function removeDeadTemporaries(dir: string): Promise<string[]> {
  const parent = dirname(dir)
  if (!existsSync(parent)) return []
  const { readdir } = await import('node:fs/promises')
  const removed: string[] = []
  for (const entry of await readdir(parent)) {
    const match = TEMPORARY.exec(entry)
    if (!match || match[1] !== basename(dir)) continue
    const pid = Number(match[2])
    let alive = pid !== process.pid
    try {
      if (alive) process.kill(pid, 0)
    } catch (error) {
      alive = (error as NodeJS.ErrnoException).code === 'EPERM'
    }
    if (!alive) {
      await rm(join(parent, entry), { recursive: true, force: true })
      removed.push(join(parent, entry))
    }
  }
  return removed
}

export class StoreWriter {
  readonly #sentinel: number
  readonly #bytes: number
  #sequences = 0
  #tokens = 0
  #targets = 0
  #maxId = -1
  #fixedLength: number | null

  private constructor(
    readonly dir: string,
    readonly temporary: string,
    private readonly options: StoreWriterOptions,
    private readonly ids: BufferedFile,
    private readonly labels: BufferedFile | null,
    private readonly offsets: BufferedFile,
    private readonly targets: BufferedFile | null,
  ) {
    this.#sentinel = ignoreSentinel(options.dtype)
    this.#bytes = bytesPerToken(options.dtype)
    this.#fixedLength = options.fixedLength
  }

  static async create(dir: string, options: StoreWriterOptions): Promise<StoreWriter> {
    // Tokens are written through typed-array views, which use the host's byte order; the format is little-endian.
    if (endianness() !== 'LE')
      throw new DatasetError(
        'the token store is little-endian, and this machine is big-endian: llamapro cannot write it here',
      )
    await mkdir(dirname(dir), { recursive: true })
    const temporary = temporaryName(dir)
    await mkdir(temporary)
    const onFull = (error: NodeJS.ErrnoException, path: string): never => {
      throw Object.assign(new DatasetError(''), { diskFull: { error, path } })
    }
    try {
      const ids = await BufferedFile.create(join(temporary, IDS_FILE), onFull)
      const labels = options.labelsAreIds ? null : await BufferedFile.create(join(temporary, LABELS_FILE), onFull)
      const offsets = await BufferedFile.create(join(temporary, OFFSETS_FILE), onFull)
      const targets = options.labelsAreIds ? null : await BufferedFile.create(join(temporary, TARGETS_FILE), onFull)
      const writer = new StoreWriter(dir, temporary, options, ids, labels, offsets, targets)
      await writer.#writeOffset(0)
      return writer
    } catch (error) {
      await rm(temporary, { recursive: true, force: true })
      throw error
    }
  }

  get sequences(): number {
    return this.#sequences
  }
  get tokens(): number {
    return this.#tokens
  }
  get bytesWritten(): number {
    return [this.ids, this.labels, this.offsets, this.targets].reduce((s, f) => s + (f ? f.written + f.used : 0), 0)
  }

  async #writeOffset(value: number): Promise<void> {
    const buffer = await this.offsets.reserve(8)
    buffer.writeDoubleLE(value, this.offsets.used)
    this.offsets.advance(8)
  }

  async #writeTokens(file: BufferedFile, values: ArrayLike<number>, labels: boolean): Promise<void> {
    const n = values.length
    const buffer = await file.reserve(n * this.#bytes)
    // The buffers are whole ArrayBuffers and each file holds one element type, so the view is always aligned.
    const view =
      this.#bytes === 2
        ? new Uint16Array(buffer.buffer, buffer.byteOffset + file.used, n)
        : new Uint32Array(buffer.buffer, buffer.byteOffset + file.used, n)
    let max = this.#maxId
    for (let i = 0; i < n; i++) {
      const v = values[i]!
      if (labels && v === IGNORE_INDEX) view[i] = this.#sentinel
      else {
        view[i] = v
        if (v > max) max = v
      }
    }
    this.#maxId = max
    file.advance(n * this.#bytes)
  }

  /** Appends one sequence. */
  async append(ids: ArrayLike<number>, labels?: ArrayLike<number>): Promise<void> {
    try {
      await this.#writeTokens(this.ids, ids, false)
      let targets = ids.length - 1
      if (this.labels) {
        if (!labels || labels.length !== ids.length) throw new Error('a sequence needs as many labels as ids')
        await this.#writeTokens(this.labels, labels, true)
        targets = 0
        for (let t = 1; t < labels.length; t++) if (labels[t] !== IGNORE_INDEX) targets++
        const buffer = await this.targets!.reserve(4)
        buffer.writeUInt32LE(targets, this.targets!.used)
        this.targets!.advance(4)
      }
      this.#sequences++
      this.#tokens += ids.length
      this.#targets += targets
      if (this.#fixedLength !== null && ids.length !== this.#fixedLength) this.#fixedLength = null
      await this.#writeOffset(this.#tokens)
    } catch (error) {
      throw await this.#failed(error)
    }
  }

  async #failed(error: unknown): Promise<unknown> {
    const full = (error as { diskFull?: { error: NodeJS.ErrnoException; path: string } }).diskFull
    await this.abort()
    if (!full) return error
    const written = this.bytesWritten
    const total = Math.max(this.options.estimateTotalBytes?.() ?? written, written)
    let free = ''
    try {
      const s = await statfs(dirname(this.dir))
      free = `, ${(s.bavail * s.bsize).toLocaleString('en-US')} bytes free there now`
    } catch {
      // the folder's file system cannot be asked; the message names the folder and the bytes anyway
    }
    return new DatasetError(
      `no space left on the device while writing the token store ${this.dir} (in ${dirname(this.dir)}): ` +
        `it needs about ${total.toLocaleString('en-US')} bytes, ${written.toLocaleString('en-US')} were ` +
        `written${free}. ` +
        'The partial store was removed. Free space there, or point tokenized_path at a folder on a larger disk.',
    )
  }

  /** Removes the temporary folder (a failed or interrupted build). */
  async abort(): Promise<void> {
    for (const file of [this.ids, this.labels, this.offsets, this.targets]) await file?.discard()
    await rm(this.temporary, { recursive: true, force: true })
  }

  /** Writes the manifest and renames the folder into place; an existing store at `dir` is replaced. */
  async commit(
    totals: Omit<StoreTotals, 'sequences' | 'tokens' | 'targetTokens'>,
    inputs: Record<string, unknown>,
    key: string,
  ): Promise<StoreManifest> {
    const manifest: StoreManifest = {
      format: STORE_FORMAT,
      version: STORE_VERSION,
      dtype: this.options.dtype,
      fixedLength: this.#sequences > 0 ? this.#fixedLength : null,
      hasLabels: this.labels !== null,
      maxTokenId: this.#maxId,
      ...totals,
      sequences: this.#sequences,
      tokens: this.#tokens,
      targetTokens: this.#targets,
      inputs,
      key,
      createdBy: `llamapro ${VERSION}`,
    }
    try {
      for (const file of [this.ids, this.labels, this.offsets, this.targets]) await file?.close()
      if (manifest.fixedLength !== null) await rm(this.offsets.path)
      await writeFile(join(this.temporary, MANIFEST_FILE), `${JSON.stringify(manifest, null, 2)}\n`)
    } catch (error) {
      throw await this.#failed(error)
    }
    if (existsSync(this.dir)) {
      // overwrite_cache, or a store another process finished first: the old one goes aside, then away.
      const old = `${temporaryName(this.dir)}-old`
      await rename(this.dir, old)
      await rename(this.temporary, this.dir)
      await rm(old, { recursive: true, force: true })
    } else {
      await rename(this.temporary, this.dir)
    }
    return manifest
  }
}
