/**
 * Writes safetensors files whose tensor bytes come from ranges of other files (or are zeros), streaming through
 * reusable windows: memory stays bounded whatever the model's size. Two lanes copy different tensors at once
 * (positional writes into the same file), each reading its next window while writing the previous one, so both
 * cores of a small machine are busy moving bytes. Used by on-disk expansion and by merge, which need no LibTorch.
 */
import { type FileHandle, open } from 'node:fs/promises'
import type { EncodedHeader } from './safetensors.js'

export type TensorSource = { file: string; offset: number; nbytes: number } | { zero: number }

export interface StreamProgress {
  bytesDone: number
  tensorsDone: number
}

/** Window size: large enough that syscalls cost nothing, small enough to bound memory (LANES * 2 are in use). */
export const COPY_WINDOW = 16 * 1024 * 1024
export const LANES = 2

export class StreamCopier {
  readonly #lanes = Array.from(
    { length: LANES },
    () => [Buffer.allocUnsafe(COPY_WINDOW), Buffer.allocUnsafe(COPY_WINDOW)] as const,
  )
  readonly #zeros = Buffer.alloc(COPY_WINDOW)
  readonly #inputs = new Map<string, Promise<FileHandle>>()
  bytesDone = 0
  tensorsDone = 0

  constructor(private readonly onProgress?: (progress: StreamProgress) => void) {}

  // The promise is cached, so two lanes asking for the same file share one handle.
  #input(path: string): Promise<FileHandle> {
    let handle = this.#inputs.get(path)
    if (!handle) {
      handle = open(path, 'r')
      this.#inputs.set(path, handle)
    }
    return handle
  }

  /** Writes `header` then each source, back to back in the given order, into a new file at `path`. */
  async writeFile(
    path: string,
    header: EncodedHeader,
    sources: readonly TensorSource[],
    signal?: AbortSignal,
  ): Promise<void> {
    const out = await open(path, 'wx')
    try {
      await writeAll(out, header.bytes, 0)
      const positions: number[] = []
      let position = header.bytes.length
      for (const source of sources) {
        positions.push(position)
        position += 'zero' in source ? source.zero : source.nbytes
      }
      const expectedEnd = header.bytes.length + header.dataSize
      if (position !== expectedEnd)
        throw new Error(`${path}: the sources hold ${position} bytes, the header describes ${expectedEnd}`)
      let next = 0
      const lane = async (windows: readonly [Buffer, Buffer]) => {
        for (let i = next++; i < sources.length; i = next++) {
          signal?.throwIfAborted()
          const source = sources[i]!
          if ('zero' in source) await this.#writeZeros(out, source.zero, positions[i]!)
          else await this.#copyRange(out, source, positions[i]!, windows)
          this.tensorsDone++
          this.onProgress?.({ bytesDone: this.bytesDone, tensorsDone: this.tensorsDone })
        }
      }
      await Promise.all(this.#lanes.map(lane))
    } finally {
      await out.close()
    }
  }

  async #writeZeros(out: FileHandle, nbytes: number, position: number): Promise<number> {
    let left = nbytes
    while (left > 0) {
      const n = Math.min(left, this.#zeros.length)
      await writeAll(out, this.#zeros.subarray(0, n), position)
      position += n
      left -= n
      this.bytesDone += n
    }
    return position
  }

  // Double-buffered: the read of window i+1 is in flight while window i is written.
  async #copyRange(
    out: FileHandle,
    source: { file: string; offset: number; nbytes: number },
    position: number,
    windows: readonly [Buffer, Buffer],
  ): Promise<number> {
    const input = await this.#input(source.file)
    let readAt = source.offset
    let left = source.nbytes
    let which = 0
    const readNext = async (): Promise<Buffer | undefined> => {
      if (left === 0) return undefined
      const window = windows[which]!
      which ^= 1
      const n = Math.min(left, window.length)
      left -= n
      const at = readAt
      readAt += n
      await readAll(input, window.subarray(0, n), at, source.file)
      return window.subarray(0, n)
    }
    let pending = readNext()
    for (;;) {
      const chunk = await pending
      if (!chunk) break
      pending = readNext()
      await writeAll(out, chunk, position)
      position += chunk.length
      this.bytesDone += chunk.length
    }
    return position
  }

  async close(): Promise<void> {
    for (const handle of this.#inputs.values()) await (await handle).close()
    this.#inputs.clear()
  }
}

async function readAll(handle: FileHandle, into: Buffer, position: number, path: string): Promise<void> {
  let done = 0
  while (done < into.length) {
    const { bytesRead } = await handle.read(into, done, into.length - done, position + done)
    if (bytesRead === 0)
      throw new Error(`${path}: unexpected end of file at byte ${position + done} (was it truncated while being read?)`)
    done += bytesRead
  }
}

async function writeAll(handle: FileHandle, data: Uint8Array, position: number): Promise<void> {
  let done = 0
  while (done < data.length) {
    const { bytesWritten } = await handle.write(data, done, data.length - done, position + done)
    done += bytesWritten
  }
}
