// Run in a fresh process by test/bundle.test.ts and scripts/check-bundle-wheel.sh: loads llamapro (from a bundle
// when LLAMAPRO_ADDON_DIR is set), runs a forward pass and one AdamW training step on a seeded random model, and
// prints the numbers and where LibTorch was mapped from (/proc/self/maps) as one JSON line.
// Plain JavaScript over dist/: it must run with nothing but node.
import { createHash } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { LlamaModel, info, loadedAddon } from '../../dist/index.js'

const config = {
  architectures: ['LlamaForCausalLM'],
  model_type: 'llama',
  hidden_size: 32,
  intermediate_size: 64,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  vocab_size: 64,
  max_position_embeddings: 64,
  rms_norm_eps: 1e-6,
  rope_theta: 10000,
  tie_word_embeddings: false,
  torch_dtype: 'float32',
}
const ids = [
  [3, 14, 15, 9, 26, 5, 35, 8, 9, 7, 9, 3],
  [2, 7, 18, 28, 18, 28, 4, 59, 0, 45, 23, 53],
]
const model = await LlamaModel.random(config, { seed: 7 })
const { logits, shape } = await model.forward(ids)
// The causal-LM loss computed here from the logits, to compare with LibTorch's own.
let sum = 0
let count = 0
for (let b = 0; b < shape[0]; b++) {
  for (let t = 0; t + 1 < shape[1]; t++) {
    const row = logits.subarray((b * shape[1] + t) * shape[2], (b * shape[1] + t + 1) * shape[2])
    const max = Math.max(...row)
    const logSum = Math.log(row.reduce((s, x) => s + Math.exp(x - max), 0)) + max
    sum += logSum - row[ids[b][t + 1]]
    count++
  }
}
const lossBefore = await model.loss(ids)
const names = model.parameters().map((p) => p.name)
await model.setTrainable(names)
model.native.configureOptimizer({
  noDecay: names.filter((n) => n.endsWith('norm.weight')),
  step: 0,
  lossScaling: false,
})
const flat = Int32Array.from(ids.flat())
const step = await model.native.trainStep(flat, flat, shape[0], shape[1], {
  lossMultiplier: 1,
  update: true,
  lr: 1e-2,
  beta1: 0.9,
  beta2: 0.999,
  eps: 1e-8,
  weightDecay: 0,
  maxGradNorm: 1,
  reportParamNorms: false,
})
const lossAfter = await model.loss(ids)
const mapped = [
  ...new Set(
    readFileSync('/proc/self/maps', 'utf8')
      .split('\n')
      .map((l) => l.split(/\s+/).slice(5).join(' '))
      .filter((p) => p.startsWith('/')),
  ),
]
console.log(
  JSON.stringify({
    libtorch: info().libtorch.version,
    addon: loadedAddon()?.file ?? null,
    logitsSha256: createHash('sha256')
      .update(new Uint8Array(logits.buffer, logits.byteOffset, logits.byteLength))
      .digest('hex'),
    firstLogits: Array.from(logits.subarray(0, 4)),
    lossFromLogits: sum / count,
    lossBefore,
    stepLoss: step.loss,
    stepUpdated: step.updated,
    gradNorm: step.gradNorm,
    lossAfter,
    torchLibraries: mapped.filter((p) => /lib(torch|c10)[\w.]*\.so/.test(p)),
  }),
)
