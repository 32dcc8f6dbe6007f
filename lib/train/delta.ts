/**
 * A delta: only the tensors that trained, with a note of the base model they apply to. For LLaMA-Pro runs this
 * is the new blocks alone, a fraction of the model: `llamapro merge <base> <delta> <out>` puts them back.
 */
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { type ModelDtype, modelDtypeSize, toSafetensorsDtype } from '../checkpoint/dtypes.js'
import { encodeSafetensorsHeader } from '../checkpoint/safetensors.js'
import type { LlamaModel } from '../model/llama-model.js'
import { writeFolderAtomically } from '../util/atomic-dir.js'
import { VERSION } from '../version.js'

export const DELTA_FILE = 'delta.safetensors'
export const DELTA_RECORD = 'delta.json'

export interface DeltaRecord {
  created_by: string
  base_model: string
  dtype: ModelDtype
  tensors: string[]
  bytes: number
}

export async function writeDelta(
  model: LlamaModel,
  dir: string,
  options: { baseModel: string; dtype: ModelDtype; trainable: readonly string[] },
): Promise<DeltaRecord> {
  const shapes = new Map(model.parameters().map((p) => [p.name, p.shape]))
  const stDtype = toSafetensorsDtype(options.dtype)
  const entries = options.trainable.map((name) => ({ name, dtype: stDtype, shape: shapes.get(name)! }))
  const header = encodeSafetensorsHeader(entries, { format: 'pt', content: 'llamapro delta: trained tensors only' })
  const record: DeltaRecord = {
    created_by: `llamapro ${VERSION}`,
    base_model: options.baseModel,
    dtype: options.dtype,
    tensors: [...options.trainable],
    bytes: entries.reduce((s, e) => s + e.shape.reduce((a, b) => a * b, 1) * modelDtypeSize(options.dtype), 0),
  }
  await writeFolderAtomically(dir, async (tmp) => {
    await model.writeTensors(join(tmp, DELTA_FILE), header.bytes, header.layout)
    await writeFile(join(tmp, DELTA_RECORD), `${JSON.stringify(record, null, 2)}\n`)
  })
  return record
}
