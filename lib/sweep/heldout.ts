/**
 * Held-out loss of one model folder on the sweep's held-out sets, by the code `llamapro eval` runs
 * (prepareEvalData + sequenceLoss), with the training YAML's dataset_dir, template and cutoff_len and its
 * per_device_eval_batch_size: `llamapro eval <run> --dataset D --stage S --template T --cutoff-len C
 * --batch-size B` prints the same number. The sweep computes no loss of its own.
 */
import { LlamaproError } from '../errors.js'
import { prepareEvalData, sequenceLoss } from '../generate/evaluate.js'
import { loadTokenizer } from '../data/tokenizer.js'
import type { Device } from '../model/llama-model.js'
import { LlamaModel } from '../model/llama-model.js'
import type { TrainConfig } from '../train/config.js'

export interface HeldOutSet {
  /** 'domain': the new domain the strategies learn; 'keep': the text the model should not forget. */
  role: 'domain' | 'keep'
  dataset: string[]
  stage: 'pt' | 'sft'
}

export interface HeldOutLoss {
  loss: number
  tokens: number
}

export type EvalSettings = Pick<
  TrainConfig,
  'datasetDir' | 'baseDir' | 'template' | 'cutoffLen' | 'perDeviceEvalBatchSize'
>

/** The `llamapro eval` command line that reproduces a figure, for the report. */
export function evalCommand(modelDir: string, set: HeldOutSet, s: EvalSettings, device: Device): string {
  return (
    `llamapro eval ${modelDir} --dataset ${set.dataset.join(',')} --dataset-dir ${s.datasetDir} --stage ${set.stage} ` +
    `--template ${s.template} --cutoff-len ${s.cutoffLen} --batch-size ` +
    `${s.perDeviceEvalBatchSize}${device === 'cpu' ? '' : ` --device ${device}`}`
  )
}

/** Loss of the model in `modelDir` on each set, the model loaded once. */
export async function heldOutLosses(
  modelDir: string,
  sets: readonly HeldOutSet[],
  s: EvalSettings,
  device: Device,
  signal?: AbortSignal,
): Promise<HeldOutLoss[]> {
  const model = await LlamaModel.load(modelDir, { device })
  try {
    const tokenizer = await loadTokenizer(modelDir).catch((error: unknown) => {
      throw new LlamaproError(
        'LLAMAPRO_TOKENIZER',
        `${modelDir}: the sweep scores held-out text with the model's tokenizer, which could not be read: ` +
          `${(error as Error).message}`,
      )
    })
    const out: HeldOutLoss[] = []
    for (const set of sets) {
      const data = await prepareEvalData(tokenizer, {
        dataset: set.dataset,
        datasetDir: s.datasetDir,
        baseDir: s.baseDir,
        stage: set.stage,
        template: s.template,
        cutoffLen: s.cutoffLen,
        signal,
      })
      const result = await sequenceLoss(model, data.sequences, tokenizer.padId, s.perDeviceEvalBatchSize, signal)
      out.push({ loss: result.loss, tokens: result.tokens })
    }
    return out
  } finally {
    model.dispose()
  }
}
