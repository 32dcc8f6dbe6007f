/** Token batches as the API accepts them, checked and flattened into the Int32Array the native side takes. */
import { LlamaproError } from '../errors.js'

export type TokenBatch = readonly (readonly number[])[] | { data: Int32Array; shape: readonly [number, number] }

export interface FlatBatch {
  data: Int32Array
  batch: number
  seq: number
}

export function flattenBatch(input: TokenBatch, what: string, vocabSize: number, allowIgnore = false): FlatBatch {
  let flat: FlatBatch
  if (Array.isArray(input)) {
    const rows = input as readonly (readonly number[])[]
    if (rows.length === 0 || !Array.isArray(rows[0]) || rows[0].length === 0) {
      throw new LlamaproError('LLAMAPRO_ARG', `${what} must be a non-empty array of non-empty rows of token ids`)
    }
    const seq = rows[0].length
    const data = new Int32Array(rows.length * seq)
    rows.forEach((row, r) => {
      if (!Array.isArray(row) || row.length !== seq) {
        throw new LlamaproError(
          'LLAMAPRO_ARG',
          `${what}: row ${r} has ${Array.isArray(row) ? row.length : 'no'} tokens, row 0 has ${seq} (rows must be ` +
            `equally long; pad them)`,
        )
      }
      row.forEach((v, c) => {
        if (!Number.isInteger(v))
          throw new LlamaproError('LLAMAPRO_ARG', `${what}[${r}][${c}] is ${v}, not an integer token id`)
        data[r * seq + c] = v
      })
    })
    flat = { data, batch: rows.length, seq }
  } else {
    const { data, shape } = input as { data: Int32Array; shape: readonly [number, number] }
    if (!(data instanceof Int32Array)) throw new LlamaproError('LLAMAPRO_ARG', `${what}.data must be an Int32Array`)
    if (!Array.isArray(shape) || shape.length !== 2 || !shape.every((d) => Number.isInteger(d) && d > 0)) {
      throw new LlamaproError('LLAMAPRO_ARG', `${what}.shape must be [batch, seq] with positive integers`)
    }
    if (shape[0] * shape[1] !== data.length) {
      throw new LlamaproError(
        'LLAMAPRO_ARG',
        `${what}: shape [${shape[0]}, ${shape[1]}] needs ${shape[0] * shape[1]} values, data has ${data.length}`,
      )
    }
    flat = { data, batch: shape[0], seq: shape[1] }
  }
  for (let i = 0; i < flat.data.length; i++) {
    const v = flat.data[i]!
    if ((v < 0 || v >= vocabSize) && !(allowIgnore && v === -100)) {
      const where = `[${Math.floor(i / flat.seq)}][${i % flat.seq}]`
      throw new LlamaproError(
        'LLAMAPRO_ARG',
        `${what}${where} is ${v}: outside the vocabulary (0..${vocabSize - 1})${allowIgnore ? ' and not -100' : ''}`,
      )
    }
  }
  return flat
}
