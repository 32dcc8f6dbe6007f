/**
 * A tokenizing worker thread: one ChunkEncoder, answering chunk messages in order. Its results' arrays are
 * transferred, not copied.
 */
import { parentPort, workerData } from 'node:worker_threads'
import { ChunkEncoder, type EncoderSettings } from './encode-chunk.js'
import type { LocatedExample } from '../dataset.js'

const settings = workerData as EncoderSettings
const encoder = ChunkEncoder.create(settings)
encoder.catch(() => undefined)

parentPort!.on('message', async (message: { id: number; examples: LocatedExample[] }) => {
  try {
    const result = await (await encoder).encode(message.examples)
    const transfer = [
      result.ids.buffer,
      result.lengths.buffer,
      ...(result.labels ? [result.labels.buffer] : []),
    ] as ArrayBuffer[]
    parentPort!.postMessage({ id: message.id, result }, transfer)
  } catch (error) {
    const e = error as Error & { code?: string }
    parentPort!.postMessage({ id: message.id, error: { message: e.message, name: e.name, code: e.code } })
  }
})
