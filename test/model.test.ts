import t from 'tap'
import { writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { LlamaModel } from '../lib/index.js'
import { parseModelConfig } from '../lib/checkpoint/config.js'
import { nativeSpec } from '../lib/model/native-spec.js'
import { native } from '../lib/native/load.js'
import { tinyRawConfig, writeTinyModel, type TinyModelOptions } from './helpers/tiny-model.js'
import { runPythonJson } from './helpers/python.js'

interface Reference {
  shape: number[]
  logits: number[]
  loss: number
}

function tokens(batch: number, seq: number, vocab: number, seed: number): number[][] {
  let s = seed
  return Array.from({ length: batch }, () =>
    Array.from({ length: seq }, () => {
      s = (s * 1103515245 + 12345) % 2147483648
      return s % vocab
    }),
  )
}

async function reference(dir: string, ids: number[][], labels?: number[][]): Promise<Reference> {
  const request = join(dirname(dir), 'ids.json')
  writeFileSync(request, JSON.stringify(labels ? { ids, labels } : { ids }))
  return runPythonJson<Reference>(['bench/reference/llama_ref.py', 'logits', dir, request])
}

const variants: [string, TinyModelOptions, number][] = [
  ['LLaMA with GQA', { kvHeads: 2 }, 10],
  [
    'Mistral with head_dim != hidden/heads and a sliding window shorter than the sequence',
    { modelType: 'mistral', headDim: 12, kvHeads: 2, config: { sliding_window: 4 } },
    12,
  ],
  ['Qwen2 with q/k/v biases', { modelType: 'qwen2', kvHeads: 1 }, 10],
  [
    'Qwen2 with sliding windows on the upper layers',
    { modelType: 'qwen2', config: { use_sliding_window: true, sliding_window: 3, max_window_layers: 2 } },
    9,
  ],
  ['tied embeddings', { tie: true }, 8],
  [
    'llama3 rope scaling',
    {
      config: {
        rope_theta: 500000,
        rope_scaling: {
          rope_type: 'llama3',
          factor: 8,
          low_freq_factor: 1,
          high_freq_factor: 4,
          original_max_position_embeddings: 16,
        },
      },
    },
    12,
  ],
  [
    'rope_parameters (newer configs) with linear scaling',
    { config: { rope_theta: undefined, rope_parameters: { rope_type: 'linear', rope_theta: 1000, factor: 2 } } },
    10,
  ],
  ['LLaMA with attention and MLP biases', { attentionBias: true, mlpBias: true }, 7],
  ['a BF16 checkpoint', { dtype: 'BF16', kvHeads: 2 }, 10],
  ['an F16 checkpoint', { dtype: 'F16' }, 10],
  ['a sharded checkpoint', { shardSize: 40_000, kvHeads: 2 }, 10],
]

for (const [label, options, seq] of variants) {
  t.test(`${label}: logits and loss match an independent PyTorch implementation`, async (t) => {
    const model = await writeTinyModel(join(t.testdir(), 'm'), { seed: 21, ...options })
    const ids = tokens(2, seq, model.config.vocabSize, 7)
    const labels = ids.map((row) => row.map((id, i) => (i % 3 === 1 ? -100 : id)))
    const ours = await LlamaModel.load(model.dir)
    const { logits, shape } = await ours.forward(ids)
    const loss = await ours.loss(ids, labels)
    ours.dispose()
    const ref = await reference(model.dir, ids, labels)
    t.same(shape, ref.shape)
    let maxDiff = 0
    for (let i = 0; i < logits.length; i++) maxDiff = Math.max(maxDiff, Math.abs(logits[i]! - ref.logits[i]!))
    t.ok(maxDiff <= 1e-4, `max |logit difference| ${maxDiff.toExponential(2)} <= 1e-4`)
    t.ok(Math.abs(loss - ref.loss) <= 1e-5, `loss ${loss} vs PyTorch cross-entropy ${ref.loss}`)
  })
}

t.test('labels default to the ids; -100 labels are not counted; a batch with none counted has loss 0', async (t) => {
  const m = await writeTinyModel(join(t.testdir(), 'm'), { seed: 2 })
  const model = await LlamaModel.load(m.dir)
  const ids = tokens(1, 6, 96, 3)
  t.equal(await model.loss(ids), await model.loss(ids, ids))
  const detail = await model.lossDetail(ids, [ids[0]!.map((id, i) => (i < 3 ? -100 : id))])
  t.equal(detail.tokens, 3, 'targets at positions 3..5 are counted (position 0 is never a target)')
  t.same(await model.lossDetail(ids, [ids[0]!.map(() => -100)]), { loss: 0, tokens: 0 })
  model.dispose()
})

t.test('token ids are checked before they reach native code', async (t) => {
  const m = await writeTinyModel(join(t.testdir(), 'm'), { seed: 2 })
  const model = await LlamaModel.load(m.dir)
  await t.rejects(model.forward([[1, 2, 96]]), {
    code: 'LLAMAPRO_ARG',
    message: /ids\[0\]\[2\] is 96: outside the vocabulary \(0\.\.95\)/,
  })
  await t.rejects(model.forward([[1, 2], [3]]), { message: /row 1 has 1 tokens, row 0 has 2/ })
  await t.rejects(model.forward([]), { message: /non-empty array/ })
  await t.rejects(model.forward({ data: new Int32Array(5), shape: [2, 3] }), {
    message: /shape \[2, 3\] needs 6 values, data has 5/,
  })
  await t.rejects(model.loss([[1, 2]], [[1, -5]]), {
    message: /labels\[0\]\[1\] is -5: outside the vocabulary \(0\.\.95\) and not -100/,
  })
  await t.rejects(model.native.forward(new Int32Array([1, 200]), 1, 2), {
    message: /token id 200 at position 1 is outside the vocabulary/,
  })
  t.throws(() => void model.native.forward(new Int32Array([1, 2]), 1, 3), {
    message: /ids holds 2 values, batch \* seq is 3/,
  })
  model.dispose()
  t.throws(() => model.parameters(), { code: 'LLAMAPRO_DISPOSED' })
})

t.test("device 'cuda': computes what the CPU does where a GPU is visible, a clear error where none is", async (t) => {
  const m = await writeTinyModel(join(t.testdir(), 'm'))
  const { info } = await import('../lib/index.js')
  await t.rejects(LlamaModel.load(m.dir, { device: 'gpu' as 'cuda' }), {
    code: 'LLAMAPRO_ARG',
    message: /device must be 'cpu', 'cuda' or 'cuda:<n>', got "gpu"/,
  })
  const { available, devices } = info().cuda
  if (!available) {
    await t.rejects(LlamaModel.load(m.dir, { device: 'cuda' }), { code: 'LLAMAPRO_NO_CUDA', message: /device 'cuda'/ })
    return
  }
  await t.rejects(LlamaModel.load(m.dir, { device: `cuda:${devices.length}` }), {
    code: 'LLAMAPRO_NO_CUDA',
    message: /there are \d+ CUDA devices/,
  })
  const ids = [[1, 5, 9, 2, 7, 3]]
  const [cpu, gpu] = await Promise.all([LlamaModel.load(m.dir), LlamaModel.load(m.dir, { device: 'cuda' })])
  const [a, b] = [await cpu.forward(ids), await gpu.forward(ids)]
  t.same(b.shape, a.shape)
  let maxDiff = 0
  for (let i = 0; i < a.logits.length; i++) maxDiff = Math.max(maxDiff, Math.abs(a.logits[i]! - b.logits[i]!))
  t.ok(maxDiff < 1e-3, `float32 logits on cuda match the CPU's (max |diff| ${maxDiff.toExponential(2)})`)
  cpu.dispose()
  gpu.dispose()
})

t.test('the event loop keeps running while native work is in flight', async (t) => {
  const m = await writeTinyModel(join(t.testdir(), 'm'), { hidden: 128, intermediate: 512, layers: 4, vocab: 2000 })
  const model = await LlamaModel.load(m.dir)
  let ticks = 0
  const timer = setInterval(() => ticks++, 1)
  const started = performance.now()
  const ids = tokens(8, 128, 2000, 5)
  for (let i = 0; i < 3; i++) await model.forward(ids)
  const elapsed = performance.now() - started
  clearInterval(timer)
  t.ok(ticks >= Math.min(5, elapsed / 10), `${ticks} timer ticks during ${elapsed.toFixed(0)} ms of forward passes`)
  model.dispose()
})

t.test(
  'the event loop keeps running while a model is created (CUDA initialisation and allocation run off the JS thread)',
  async (t) => {
    // 2000 small layers: tens of thousands of parameter tensors, so creation takes long enough to be seen.
    const raw = tinyRawConfig({ layers: 2000, hidden: 16, heads: 2, intermediate: 16, vocab: 32 })
    const spec = nativeSpec(parseModelConfig(raw, 'config.json'))
    let ticks = 0
    const timer = setInterval(() => ticks++, 1)
    const started = performance.now()
    const handle = await native().NativeModel.create(spec, { device: 'cpu', dtype: 'float32' })
    const elapsed = performance.now() - started
    clearInterval(timer)
    t.equal(handle.parameters().length, 2000 * 9 + 3, 'the model was created with every layer')
    // Created on the JS thread, no timer could run before the Promise settled (ticks would be 0).
    t.ok(
      ticks >= 1 && ticks >= Math.min(5, elapsed / 10),
      `${ticks} timer ticks during ${elapsed.toFixed(0)} ms of model creation`,
    )
    handle.dispose()
    // And through the public API.
    ticks = 0
    const again = setInterval(() => ticks++, 1)
    const model = await LlamaModel.random(raw, { seed: 1 })
    clearInterval(again)
    t.ok(ticks >= 1, `${ticks} timer ticks during LlamaModel.random of the same model`)
    model.dispose()
  },
)

t.test('memory() counts the parameters, then their gradients and AdamW state once they train', async (t) => {
  const model = await LlamaModel.random(tinyRawConfig(), { seed: 1 })
  const params = model.parameters()
  const bytes = params.reduce((sum, p) => sum + p.numel * 4, 0)
  t.same(
    model.memory(),
    { parameterBytes: bytes, gradientBytes: 0, optimizerBytes: 0 },
    'float32 parameters, nothing else',
  )
  const norm = params.find((p) => p.name === 'model.norm.weight')!
  await model.setTrainable([norm.name])
  const ids = new Int32Array(8).map((_, i) => i + 3)
  const step = {
    lossMultiplier: 1,
    lr: 1e-3,
    beta1: 0.9,
    beta2: 0.999,
    eps: 1e-8,
    weightDecay: 0,
    maxGradNorm: 1,
    reportParamNorms: false,
  }
  await model.trainStep({ ids, labels: ids, batch: 1, seq: 8 }, { ...step, update: false })
  t.same(
    model.memory(),
    { parameterBytes: bytes, gradientBytes: norm.numel * 4, optimizerBytes: 0 },
    'after backward: the one trainable gradient',
  )
  await model.trainStep({ ids, labels: ids, batch: 1, seq: 8 }, { ...step, update: true })
  t.same(
    model.memory(),
    { parameterBytes: bytes, gradientBytes: 0, optimizerBytes: 2 * norm.numel * 4 },
    'after the update: exp_avg and exp_avg_sq, gradients released',
  )
  model.dispose()
})
