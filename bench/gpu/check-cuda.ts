/**
 * The CUDA checks for the GPU machine (bench/gpu/run.sh): a model on `cuda` against transformers' logits, and a
 * short LLaMA-Pro training run with its loss and tokens/s. Prints one JSON object.
 */
import { execFileSync } from 'node:child_process'
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { LlamaModel, info } from '../../lib/index.js'
import { expandCheckpoint } from '../../lib/expand/expand-checkpoint.js'
import { parseTrainConfig } from '../../lib/train/config.js'
import { train } from '../../lib/train/trainer.js'
import { writeDatasets, writeTrainableModel } from '../../test/helpers/trainable-model.js'

const dir = mkdtempSync(join(tmpdir(), 'llamapro-cuda-'))
const runtime = info()
const base = join(dir, 'base')
await writeTrainableModel(base, { hidden: 256, intermediate: 688, layers: 8, heads: 8, kvHeads: 4, seed: 1 })
const ids = [
  Array.from({ length: 64 }, (_, i) => (i * 37) % 300),
  Array.from({ length: 64 }, (_, i) => (i * 11 + 5) % 300),
]

const model = await LlamaModel.load(base, { device: 'cuda', dtype: 'float32' })
const ours = await model.forward(ids)
model.dispose()
const reference = JSON.parse(
  execFileSync(process.env.LLAMAPRO_PYTHON ?? 'python3', ['bench/gpu/check_transformers.py'], {
    input: JSON.stringify({ model: base, ids, device: 'cuda', dtype: 'float32' }),
    encoding: 'utf8',
    maxBuffer: 256 * 1024 * 1024,
  }),
) as { logits: number[] }
let maxDiff = 0
ours.logits.forEach((v, i) => (maxDiff = Math.max(maxDiff, Math.abs(v - reference.logits[i]!))))

await expandCheckpoint(base, join(dir, 'pro'), { numExpand: 2 })
const data = await writeDatasets(dir)
const losses: number[] = []
const result = await train(
  parseTrainConfig(
    {
      model_name_or_path: join(dir, 'pro'),
      stage: 'pt',
      dataset: data.pt,
      output_dir: join(dir, 'out'),
      use_llama_pro: true,
      freeze_trainable_layers: 2,
      cutoff_len: 64,
      per_device_train_batch_size: 8,
      learning_rate: 1e-3,
      max_steps: 40,
      logging_steps: 10,
      device: 'cuda',
      bf16: true,
    },
    'gpu check',
    dir,
  ),
  { onEvent: (e) => e.type === 'step' && losses.push(e.loss) },
)
console.log(
  JSON.stringify(
    {
      device: runtime.cuda.devices[0]?.name ?? null,
      libtorch: runtime.libtorch.version,
      logits: { maxAbsDifferenceVsTransformers: maxDiff, tolerance: 1e-4, ok: maxDiff <= 1e-4 },
      training: {
        steps: result.globalStep,
        firstLoss: losses[0],
        lastLoss: losses.at(-1),
        tokensPerSecond: result.tokensPerSecond,
        bf16: true,
      },
    },
    null,
    2,
  ),
)
