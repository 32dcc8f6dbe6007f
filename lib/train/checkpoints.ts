/**
 * Training checkpoints: `checkpoint-<step>/` holds a complete Hugging Face model folder (a PEFT adapter folder for
 * LoRA runs), plus
 * optimizer.safetensors (the float32 master weights of the trainable parameters and AdamW's moments) and
 * trainer_state.json (step, data position, loss scale, log history). Each is written to a temporary folder and
 * renamed, so a checkpoint either exists whole or not at all.
 */
import { existsSync } from 'node:fs'
import { readFile, readdir, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { type ModelDtype, toSafetensorsDtype } from '../checkpoint/dtypes.js'
import { encodeSafetensorsHeader, readSafetensorsHeader } from '../checkpoint/safetensors.js'
import { LlamaproError } from '../errors.js'
import type { LlamaModel } from '../model/llama-model.js'
import { writeFolderAtomically } from '../util/atomic-dir.js'

export const OPTIMIZER_FILE = 'optimizer.safetensors'
export const TRAINER_STATE_FILE = 'trainer_state.json'

export interface TrainerState {
  global_step: number
  max_steps: number
  /** Fractional epochs done, as transformers reports it. */
  epoch: number
  /** Where the data stream continues: epoch number and micro-batch index within it. */
  epoch_index: number
  batch_index: number
  seed: number
  /** These shape the data order and what a step is: a resumed run must use the same. */
  per_device_train_batch_size?: number
  gradient_accumulation_steps?: number
  /** null when streaming. */
  train_sequences: number | null
  /** AdamW's own step count (bias correction); behind global_step by the fp16 updates that were skipped. */
  optimizer_step?: number
  loss_scale: number
  good_steps: number
  /** The loss of the optimizer steps since the last log line, so the first log after a resume averages them too. */
  logging_window?: { loss: number; steps: number }
  log_history: Record<string, unknown>[]
  /** Ranks of the data-parallel run (1 when absent): a resume needs the same. */
  world_size?: number
  created_by: string
}

export const checkpointName = (step: number) => `checkpoint-${step}`

export async function listCheckpoints(outputDir: string): Promise<{ step: number; path: string }[]> {
  if (!existsSync(outputDir)) return []
  const out: { step: number; path: string }[] = []
  for (const entry of await readdir(outputDir)) {
    const match = /^checkpoint-(\d+)$/.exec(entry)
    if (match && existsSync(join(outputDir, entry, TRAINER_STATE_FILE)))
      out.push({ step: Number(match[1]), path: join(outputDir, entry) })
  }
  return out.sort((a, b) => a.step - b.step)
}

export async function writeCheckpoint(
  model: LlamaModel,
  path: string,
  state: TrainerState,
  options: {
    modelDtype: ModelDtype
    withOptimizer: boolean
    onWarning?: (message: string) => void
    saveModel?: (dir: string) => Promise<void>
  },
): Promise<void> {
  await writeFolderAtomically(
    path,
    async (tmp) => {
      // LoRA runs save the adapter instead of the model (LLaMA-Factory's checkpoints hold adapter_model.safetensors).
      if (options.saveModel) await options.saveModel(tmp)
      else await model.saveInto(tmp, { dtype: options.modelDtype })
      if (options.withOptimizer) {
        const trainable = model.parameters().filter((p) => p.requiresGrad)
        const stateNames = model.optimizer.progress().stateTensors
        const entries = [
          ...trainable.map((p) => ({ name: p.name, dtype: toSafetensorsDtype(p.dtype), shape: p.shape })),
          ...stateNames.map((name) => {
            const info = model.tensorInfo(name)
            return { name, dtype: toSafetensorsDtype(info.dtype), shape: info.shape }
          }),
        ]
        const header = encodeSafetensorsHeader(entries, {
          format: 'pt',
          content: 'llamapro master weights and AdamW state',
        })
        await model.writeTensors(join(tmp, OPTIMIZER_FILE), header.bytes, header.layout)
      }
      await writeFile(join(tmp, TRAINER_STATE_FILE), `${JSON.stringify(state, null, 2)}\n`)
    },
    { onWarning: options.onWarning },
  )
}

export async function readTrainerState(checkpoint: string): Promise<TrainerState> {
  const path = join(checkpoint, TRAINER_STATE_FILE)
  try {
    return JSON.parse(await readFile(path, 'utf8')) as TrainerState
  } catch (error) {
    throw new LlamaproError(
      'LLAMAPRO_RESUME',
      `${path}: cannot read the trainer state (${(error as Error).message}); is ${checkpoint} a llamapro checkpoint?`,
    )
  }
}

/** Restores master weights and AdamW state; call after setTrainable with the same trainable set. */
export async function loadOptimizerState(model: LlamaModel, checkpoint: string): Promise<void> {
  const path = join(checkpoint, OPTIMIZER_FILE)
  if (!existsSync(path)) {
    throw new LlamaproError(
      'LLAMAPRO_RESUME',
      `${checkpoint} has no ${OPTIMIZER_FILE} (saved with save_only_model?), so training cannot resume from it exactly`,
    )
  }
  const file = await readSafetensorsHeader(path)
  const trainable = new Set(
    model
      .parameters()
      .filter((p) => p.requiresGrad)
      .map((p) => p.name),
  )
  for (const t of file.tensors) {
    const param = t.name.replace(/^exp_avg(_sq)?:/, '')
    if (!trainable.has(param)) {
      throw new LlamaproError(
        'LLAMAPRO_RESUME',
        `${path} holds state for "${param}", which does not train with this configuration: resume with the strategy ` +
          `the checkpoint was made with`,
      )
    }
  }
  await model.loadTensors(
    `loading ${path}`,
    file.tensors.map((t) => ({
      name: t.name,
      file: path,
      offset: file.dataStart + t.begin,
      nbytes: t.end - t.begin,
      dtype: t.dtype,
      shape: t.shape,
    })),
  )
}

/** Deletes the oldest checkpoints beyond `limit`. */
export async function rotateCheckpoints(outputDir: string, limit: number | null): Promise<string[]> {
  if (!limit) return []
  const all = await listCheckpoints(outputDir)
  const removed = all.slice(0, Math.max(0, all.length - limit)).map((c) => c.path)
  for (const path of removed) await rm(path, { recursive: true, force: true })
  return removed
}
