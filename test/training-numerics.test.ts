import t from 'tap'
import { writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { LlamaModel } from '../lib/index.js'
import { freezePolicy } from '../lib/policy/freeze-policy.js'
import { writeTinyModel, type TinyModelOptions } from './helpers/tiny-model.js'
import { runPythonJson } from './helpers/python.js'

// Training steps (forward, backward, clipping, AdamW with decoupled decay) compared with torch.optim.AdamW and
// torch.nn.utils.clip_grad_norm_ on the independent PyTorch model, step by step.
const cases: [string, TinyModelOptions, Record<string, unknown>][] = [
  ['full fine-tuning with clipping and weight decay', { kvHeads: 2, seed: 4 }, { finetuningType: 'full' }],
  [
    'LLaMA-Pro style: two layers of a Qwen2 model',
    { modelType: 'qwen2', layers: 4, seed: 5 },
    { useLlamaPro: true, freezeTrainableLayers: 2 },
  ],
  [
    'only the MLPs of the last layer, tied embeddings',
    { tie: true, seed: 6 },
    { freezeTrainableLayers: 1, freezeTrainableModules: 'mlp' },
  ],
  [
    'the layernorms and the final norm',
    { seed: 7 },
    {
      freezeTrainableLayers: 2,
      freezeTrainableModules: 'input_layernorm,post_attention_layernorm',
      freezeExtraModules: 'norm',
    },
  ],
]

for (const [label, modelOptions, strategy] of cases) {
  t.test(`${label}: the loss sequence matches PyTorch`, async (t) => {
    const fixture = await writeTinyModel(join(t.testdir(), 'm'), { std: 0.1, ...modelOptions })
    const model = await LlamaModel.load(fixture.dir)
    const names = model.parameters().map((p) => p.name)
    const policy = freezePolicy(model.config.numLayers, names, strategy)
    await model.setTrainable(policy.trainable)
    const noDecay = policy.trainable.filter((n) => n.endsWith('.bias') || n.endsWith('norm.weight'))
    model.native.configureOptimizer({ noDecay, step: 0, lossScaling: false })
    const vocab = model.config.vocabSize
    const batches = [0, 1, 2].map((b) => {
      const ids = Array.from({ length: 2 }, (_, r) =>
        Array.from({ length: 12 }, (_, c) => (r * 31 + c * 7 + b * 13) % vocab),
      )
      return { ids, labels: ids.map((row, r) => row.map((id, c) => (c < 3 && r === b % 2 ? -100 : id))) }
    })
    const steps = 8
    const ours: number[] = []
    for (let s = 0; s < steps; s++) {
      const { ids, labels } = batches[s % batches.length]!
      const result = await model.native.trainStep(new Int32Array(ids.flat()), new Int32Array(labels.flat()), 2, 12, {
        lossMultiplier: 1,
        update: true,
        lr: 5e-3,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weightDecay: 0.1,
        maxGradNorm: 0.5,
        reportParamNorms: false,
      })
      ours.push(result.loss)
    }
    model.dispose()
    const spec = join(dirname(fixture.dir), 'spec.json')
    writeFileSync(
      spec,
      JSON.stringify({ trainable: policy.trainable, steps, lr: 5e-3, weight_decay: 0.1, max_grad_norm: 0.5, batches }),
    )
    const reference = await runPythonJson<{ losses: number[] }>([
      'bench/reference/llama_ref.py',
      'train',
      fixture.dir,
      spec,
    ])
    const worst = Math.max(...ours.map((l, i) => Math.abs(l - reference.losses[i]!)))
    t.ok(
      worst <= 2e-5,
      `max |loss difference| over ${steps} steps: ${worst.toExponential(2)} (llamapro ` +
        `${ours.map((l) => l.toFixed(5)).join(' ')})`,
    )
    t.ok(ours[steps - 1]! < ours[0]!, 'and the loss falls')
  })
}
