import t, { type Test } from 'tap'
import { execFile } from 'node:child_process'
import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { LlamaModel } from '../lib/index.js'
import { openCheckpoint } from '../lib/checkpoint/checkpoint.js'
import { expandCheckpoint } from '../lib/expand/expand-checkpoint.js'
import { train } from '../lib/train/trainer.js'
import type { NativeTrainStepOptions } from '../lib/native/binding.js'
import { native } from '../lib/native/load.js'
import { type FreezeOptions, freezePolicy } from '../lib/policy/freeze-policy.js'
import { estimateTrainingMemory } from '../lib/policy/memory-estimate.js'
import { parseTrainConfig } from '../lib/train/config.js'
import { REPO_ROOT } from './helpers/python.js'
import { tinyRawConfig, writeTinyModel } from './helpers/tiny-model.js'
import { writeDatasets, writeTrainableModel } from './helpers/trainable-model.js'

const CLI = join(REPO_ROOT, 'dist', 'cli', 'main.js')
const run = promisify(execFile)

const STEP: NativeTrainStepOptions = {
  lossMultiplier: 1,
  update: false,
  lr: 1e-2,
  beta1: 0.9,
  beta2: 0.999,
  eps: 1e-8,
  weightDecay: 0,
  maxGradNorm: 0,
  reportParamNorms: false,
}

function tokens(b: number, seq: number, vocab: number, salt = 0): Int32Array {
  return new Int32Array(b * seq).map((_, i) => (i * 7919 + salt * 104729 + 13) % vocab)
}

/** The same model twice (same seed), with and without checkpointing, trained with `options`. */
async function pair(raw: Record<string, unknown>, options: FreezeOptions, dtype: 'float32' | 'bfloat16' = 'float32') {
  const models: LlamaModel[] = []
  for (const gradientCheckpointing of [true, false]) {
    const model = await LlamaModel.random(raw, { seed: 7, dtype, gradientCheckpointing })
    const policy = freezePolicy(
      model.config.numLayers,
      model.parameters().map((p) => p.name),
      options,
    )
    await model.setTrainable(policy.trainable)
    model.native.configureOptimizer({ noDecay: [], step: 0, lossScaling: false })
    models.push(model)
  }
  const trainable = models[0]!
    .parameters()
    .filter((p) => p.requiresGrad)
    .map((p) => p.name)
  return { on: models[0]!, off: models[1]!, trainable }
}

async function expectSameGradients(t: Test, on: LlamaModel, off: LlamaModel, trainable: string[], label: string) {
  const names = (await on.native.gradients()).map((g) => g.name).sort()
  t.same(
    names,
    [...trainable].sort(),
    `${label}: gradients exist for exactly the trainable parameters (frozen ones get none)`,
  )
  t.same(
    (await off.native.gradients()).map((g) => g.name).sort(),
    names,
    `${label}: the same set without checkpointing`,
  )
  const pairs = trainable.map((n) => [`grad:${n}`, `grad:${n}`] as [string, string])
  const differences = await on.native.maxAbsDifference(off.native, pairs)
  const scales = await off.native.tensorMaxAbs(pairs.map((p) => p[0]))
  const worst = trainable
    .map((name, i) => ({ name, relative: differences[i]! === 0 ? 0 : differences[i]! / scales[i]! }))
    .sort((a, b) => b.relative - a.relative)[0]!
  t.ok(
    worst.relative <= 1e-6,
    `${label}: every gradient equal to 1e-6 relative (worst ${worst.name}: ${worst.relative.toExponential(2)})`,
  )
  t.ok(
    scales.some((s) => s > 0),
    `${label}: the gradients are not all zero`,
  )
}

const STRATEGIES: [string, FreezeOptions][] = [
  ['full', { finetuningType: 'full' }],
  ['last:2', { freezeTrainableLayers: 2 }],
  ['pro:2', { useLlamaPro: true, freezeTrainableLayers: 2 }],
  [
    'layers 2 and 5, mlp only, with the final norm',
    { freezeTrainableLayerIds: '2,5', freezeTrainableModules: 'mlp', freezeExtraModules: 'norm' },
  ],
]

t.test('losses and gradients are the same with and without activation checkpointing (CPU, float32)', async (t) => {
  const raw = tinyRawConfig({ layers: 6, hidden: 64, intermediate: 128, heads: 4, kvHeads: 2, vocab: 200 })
  for (const [label, options] of STRATEGIES) {
    const { on, off, trainable } = await pair(raw, options)
    const [B, T] = [3, 20]
    const ids = tokens(B, T, 200)
    const labels = ids.map((v, i) => (i % 7 === 0 ? -100 : v))
    // Two micro-batches accumulate into .grad: the second backward adds to the first one's gradients.
    let lossOn = 0
    let lossOff = 0
    for (const salt of [0, 1]) {
      const x = salt === 0 ? ids : tokens(B, T, 200, salt)
      const y = salt === 0 ? labels : x
      lossOn = (await on.native.trainStep(x, y, B, T, { ...STEP, lossMultiplier: 0.5 })).loss
      lossOff = (await off.native.trainStep(x, y, B, T, { ...STEP, lossMultiplier: 0.5 })).loss
      t.ok(Math.abs(lossOn - lossOff) <= 1e-6 * Math.abs(lossOff), `${label}: loss ${lossOn} = ${lossOff}`)
    }
    await expectSameGradients(t, on, off, trainable, label)
    // The update that follows is the same too.
    const stepOn = await on.native.trainStep(ids, labels, B, T, { ...STEP, update: true, maxGradNorm: 1 })
    const stepOff = await off.native.trainStep(ids, labels, B, T, { ...STEP, update: true, maxGradNorm: 1 })
    t.ok(
      Math.abs(stepOn.gradNorm - stepOff.gradNorm) <= 1e-6 * stepOff.gradNorm,
      `${label}: gradient norm ${stepOn.gradNorm} = ${stepOff.gradNorm}`,
    )
    const weights = await on.native.maxAbsDifference(
      off.native,
      trainable.map((n) => [n, n] as [string, string]),
    )
    t.ok(
      Math.max(...weights) <= 1e-6,
      `${label}: the updated weights agree (max difference ${Math.max(...weights).toExponential(2)})`,
    )
    on.dispose()
    off.dispose()
  }
})

t.test('checkpointing keeps sliding windows, biases, tied and trainable embeddings exact', async (t) => {
  const cases: [string, Record<string, unknown>, FreezeOptions][] = [
    [
      'mistral with a sliding window',
      { ...tinyRawConfig({ layers: 4, modelType: 'mistral', vocab: 120 }), sliding_window: 5 },
      { freezeTrainableLayers: 3 },
    ],
    [
      'qwen2 biases',
      tinyRawConfig({ layers: 4, modelType: 'qwen2', kvHeads: 2, vocab: 120 }),
      { freezeTrainableLayers: -2 },
    ],
    [
      'tied, trainable embeddings',
      tinyRawConfig({ layers: 4, tie: true, vocab: 120 }),
      { freezeTrainableLayers: 1, freezeExtraModules: 'embed_tokens' },
    ],
  ]
  for (const [label, raw, options] of cases) {
    const { on, off, trainable } = await pair(raw, options)
    const ids = tokens(2, 16, 120, 3)
    const a = await on.native.trainStep(ids, ids, 2, 16, STEP)
    const b = await off.native.trainStep(ids, ids, 2, 16, STEP)
    t.ok(Math.abs(a.loss - b.loss) <= 1e-6 * b.loss, `${label}: loss ${a.loss} = ${b.loss}`)
    await expectSameGradients(t, on, off, trainable, label)
    on.dispose()
    off.dispose()
  }
})

t.test('bfloat16 activations with float32 master weights: the recomputation is the same computation', async (t) => {
  const { on, off, trainable } = await pair(
    tinyRawConfig({ layers: 4, vocab: 120 }),
    { freezeTrainableLayers: 2 },
    'bfloat16',
  )
  const ids = tokens(2, 16, 120, 5)
  const a = await on.native.trainStep(ids, ids, 2, 16, STEP)
  const b = await off.native.trainStep(ids, ids, 2, 16, STEP)
  t.equal(a.loss, b.loss, `loss ${a.loss}`)
  await expectSameGradients(t, on, off, trainable, 'bfloat16')
  on.dispose()
  off.dispose()
})

t.test('setGradientCheckpointing switches between steps; a bad value is an error', async (t) => {
  const model = await LlamaModel.random(tinyRawConfig({ layers: 4, vocab: 120 }), { seed: 2 })
  await model.setTrainable(model.parameters().map((p) => p.name))
  const ids = tokens(2, 16, 120, 9)
  const first = await model.native.trainStep(ids, ids, 2, 16, STEP)
  const norms = await model.native.gradients()
  await model.native.trainStep(ids, ids, 2, 16, { ...STEP, lossMultiplier: 0 }) // keeps .grad, adds zero
  model.setGradientCheckpointing(false)
  await model.native.trainStep(ids, ids, 2, 16, { ...STEP, update: true, lr: 0 }) // adds one more, then zeroes
  model.setGradientCheckpointing(true)
  const again = await model.native.trainStep(ids, ids, 2, 16, STEP)
  t.ok(
    Math.abs(again.loss - first.loss) <= 1e-6 * first.loss,
    'the loss after switching back is the same (lr 0 left the weights alone)',
  )
  const later = await model.native.gradients()
  t.same(
    later.map((g) => g.name),
    norms.map((g) => g.name),
  )
  t.ok(
    later.every((g, i) => Math.abs(g.norm - norms[i]!.norm) <= 1e-6 * norms[i]!.norm),
    'and so are the gradients',
  )
  t.throws(() => model.setGradientCheckpointing('yes' as unknown as boolean), { code: 'LLAMAPRO_ARG' })
  await t.rejects(LlamaModel.random(tinyRawConfig({ layers: 2 }), { gradientCheckpointing: 1 as unknown as boolean }), {
    code: 'LLAMAPRO_ARG',
  })
  await t.rejects(
    model.native.tensorBytes('grad:model.norm.weight', 'F32').then(async () => {
      await model.native.trainStep(ids, ids, 2, 16, { ...STEP, update: true, lr: 0 })
      return model.native.tensorBytes('grad:model.norm.weight', 'F32')
    }),
    /no gradient grad:model.norm.weight/,
    'after an update there is no gradient to read',
  )
  model.dispose()
})

t.test('measured peak memory with and without checkpointing, beside the estimate', async (t) => {
  const raw = tinyRawConfig({ layers: 6, hidden: 128, intermediate: 344, heads: 4, kvHeads: 2, vocab: 1000 })
  const [B, T] = [4, 96]
  const attention = Number(native().runtimeInfo().torchVersion.split('.')[0]) >= 2 ? 'flash' : 'grouped'
  const strategies = [
    ['full', { finetuningType: 'full' }],
    ['last:2', { freezeTrainableLayers: 2 }],
    // Layers 2 and 5 train: 3 and 4 are frozen between them, kept by default and recomputed with
    // checkpointFrozenLayers.
    ['pro:2', { useLlamaPro: true, freezeTrainableLayers: 2 }],
  ] as const
  const modes = [
    ['on', { gradientCheckpointing: true, checkpointFrozenLayers: false }],
    ['off', { gradientCheckpointing: false, checkpointFrozenLayers: false }],
    ['on, frozen layers too', { gradientCheckpointing: true, checkpointFrozenLayers: true }],
  ] as const
  for (const [label, options] of strategies) {
    const peaks: Record<string, number> = {}
    for (const [mode, settings] of modes) {
      const model = await LlamaModel.random(raw, { seed: 1, ...settings })
      const params = model.parameters()
      const policy = freezePolicy(
        6,
        params.map((p) => p.name),
        options,
      )
      await model.setTrainable(policy.trainable)
      model.native.configureOptimizer({ noDecay: [], step: 0, lossScaling: false })
      const ids = tokens(B, T, 1000)
      await model.native.trainStep(ids, ids, B, T, { ...STEP, update: true }) // allocates the optimizer state
      native().resetPeakMemory()
      await model.native.trainStep(ids, ids, B, T, { ...STEP, update: true })
      const measured = native().memoryStats().cpu.peak
      const estimate = estimateTrainingMemory({
        config: model.config,
        parameters: params,
        trainable: new Set(policy.trainable),
        batch: B,
        seq: T,
        computeDtype: 'float32',
        attention,
        ...settings,
      })
      const ratio = estimate.peak / measured
      t.ok(
        ratio > 0.8 && ratio < 1.2,
        `${label}, checkpointing ${mode}: estimated ${(estimate.peak / 1e6).toFixed(2)} MB, measured ` +
          `${(measured / 1e6).toFixed(2)} MB (ratio ${ratio.toFixed(3)})`,
      )
      peaks[mode] = measured
      model.dispose()
    }
    t.ok(
      peaks.on! < peaks.off!,
      `${label}: checkpointing lowers the measured peak (${(peaks.on! / 1e6).toFixed(2)} MB < ` +
        `${(peaks.off! / 1e6).toFixed(2)} MB)`,
    )
    const frozen = peaks['on, frozen layers too']!
    if (label === 'pro:2')
      t.ok(
        frozen < peaks.on!,
        `pro:2: recomputing the frozen layers too lowers it further (${(frozen / 1e6).toFixed(2)} MB)`,
      )
    else
      t.ok(
        Math.abs(frozen - peaks.on!) <= 0.02 * peaks.on!,
        `${label}: no frozen layer is recorded, so recomputing frozen layers changes nothing ` +
          `(${(frozen / 1e6).toFixed(2)} MB)`,
      )
  }
})

t.test('disable_gradient_checkpointing: LLaMA-Factory key, default false (checkpointing on)', async (t) => {
  const base = { model_name_or_path: 'm', dataset: 'd', output_dir: 'o' }
  t.equal(parseTrainConfig(base, 'cfg.yaml', '/tmp', { partial: true }).disableGradientCheckpointing, false)
  t.equal(
    parseTrainConfig({ ...base, disable_gradient_checkpointing: true }, 'cfg.yaml', '/tmp', { partial: true })
      .disableGradientCheckpointing,
    true,
  )
  t.throws(
    () => parseTrainConfig({ ...base, disable_gradient_checkpointing: 'maybe' }, 'cfg.yaml', '/tmp', { partial: true }),
    /disable_gradient_checkpointing/,
  )
})

t.test('plan --gradient-checkpointing on|off, and from the YAML; bench --gradient-checkpointing on,off', async (t) => {
  const dir = t.testdir()
  const model = await writeTinyModel(join(dir, 'm'), { layers: 4 })
  const plan = async (...args: string[]) =>
    JSON.parse((await run(process.execPath, [CLI, 'plan', ...args, '--batch', '2', '--seq', '64', '--json'])).stdout)
      .memory
  const on = await plan(model.dir, '--finetuning-type', 'full')
  const off = await plan(model.dir, '--finetuning-type', 'full', '--gradient-checkpointing', 'off')
  t.equal(on.gradientCheckpointing, true, 'on by default')
  t.equal(off.gradientCheckpointing, false)
  t.ok(
    on.activations < off.activations && on.recomputed > 0 && off.recomputed === 0,
    `activations kept: ${on.activations} with, ${off.activations} without`,
  )
  const yaml = join(dir, 'train.yaml')
  writeFileSync(
    yaml,
    `model_name_or_path: ${model.dir}\nfinetuning_type: full\ndataset: d\noutput_dir: ` +
      `${join(dir, 'out')}\ndisable_gradient_checkpointing: true\n`,
  )
  t.equal((await plan(yaml)).gradientCheckpointing, false, 'disable_gradient_checkpointing: true in the YAML')
  t.equal(
    (await plan(yaml, '--gradient-checkpointing', 'on')).gradientCheckpointing,
    true,
    'the flag overrides the YAML',
  )
  const text = (await run(process.execPath, [CLI, 'plan', model.dir, '--finetuning-type', 'full'])).stdout
  t.match(text, /activation checkpointing on/)
  t.match(text, /recomputed/)
  const bad = await run(process.execPath, [CLI, 'plan', model.dir, '--gradient-checkpointing', 'yes']).then(
    () => null,
    (e) => e,
  )
  t.equal(bad?.code, 2, 'a bad value is a usage error')
  t.match(bad?.stderr, /--gradient-checkpointing must be on, off or all/)

  const report = JSON.parse(
    (
      await run(process.execPath, [
        CLI,
        'bench',
        'tiny',
        '--strategies',
        'last:1',
        '--gradient-checkpointing',
        'on,off',
        '--steps',
        '1',
        '--warmup',
        '0',
        '--batch',
        '1',
        '--seq',
        '16',
        '--json',
      ])
    ).stdout,
  )
  t.same(
    report.results.map((r: { strategy: string; gradientCheckpointing: boolean }) => [
      r.strategy,
      r.gradientCheckpointing,
    ]),
    [
      ['last:1/ckpt', true],
      ['last:1/no-ckpt', false],
    ],
  )
  const badBench = await run(process.execPath, [CLI, 'bench', 'tiny', '--gradient-checkpointing', 'on,on']).then(
    () => null,
    (e) => e,
  )
  t.equal(badBench?.code, 2)
})

/** A LLaMA-Pro model (6 layers: 2 and 5 train, 3 and 4 frozen between them) with a real tokenizer, and data. */
async function proSetup(t: Test) {
  const dir = t.testdir()
  await writeTrainableModel(join(dir, 'base'), { seed: 5 })
  await expandCheckpoint(join(dir, 'base'), join(dir, 'pro'), { numExpand: 2 })
  return { dir, pro: join(dir, 'pro'), data: await writeDatasets(dir) }
}

const SETTINGS = [
  ['off', { disable_gradient_checkpointing: true }],
  ['on (the layers that train)', {}],
  ['on, frozen layers too', { checkpoint_frozen_layers: true }],
] as const

t.test(
  'sft batches with padding and pt packing train the same numbers with every checkpointing setting (CPU, float32)',
  async (t) => {
    const { dir, pro, data } = await proSetup(t)
    const cases = {
      // Alpaca examples of different lengths: each batch is padded on the right to its longest, prompts are -100.
      sft: { stage: 'sft', template: 'default', dataset: data.alpaca, cutoff_len: 64 },
      pt: { stage: 'pt', dataset: data.pt, packing: true, cutoff_len: 32 },
    }
    for (const [stage, keys] of Object.entries(cases)) {
      const runs: { log: { loss: number; grad_norm: number }[]; weights: Map<string, Buffer> }[] = []
      for (const [label, setting] of SETTINGS) {
        const out = join(dir, `${stage}-${runs.length}`)
        const cfg = parseTrainConfig(
          {
            model_name_or_path: pro,
            finetuning_type: 'freeze',
            use_llama_pro: true,
            freeze_trainable_layers: 2,
            per_device_train_batch_size: 4,
            learning_rate: 3e-3,
            max_steps: 4,
            logging_steps: 1,
            save_strategy: 'no',
            output_dir: out,
            ...keys,
            ...setting,
          },
          'test config',
          dir,
        )
        await train(cfg)
        const log = readFileSync(join(out, 'trainer_log.jsonl'), 'utf8')
          .trim()
          .split('\n')
          .map((l) => JSON.parse(l))
        const checkpoint = await openCheckpoint(out)
        const weights = new Map(
          checkpoint.tensors.map((x) => [x.name, readFileSync(x.file).subarray(x.offset, x.offset + x.nbytes)]),
        )
        runs.push({ log, weights })
        t.equal(log.length, 4, `${stage}, checkpointing ${label}: 4 logged steps`)
      }
      const [off, ...others] = runs
      others.forEach((run, k) => {
        const label = `${stage}, checkpointing ${SETTINGS[k + 1]![0]}`
        t.same(
          run.log.map((r) => r.loss),
          off!.log.map((r) => r.loss),
          `${label}: the same loss at every step as without checkpointing`,
        )
        t.same(
          run.log.map((r) => r.grad_norm),
          off!.log.map((r) => r.grad_norm),
          `${label}: the same gradient norms`,
        )
        const differing = [...off!.weights]
          .filter(([name, bytes]) => !bytes.equals(run.weights.get(name)!))
          .map(([name]) => name)
        t.same(differing, [], `${label}: the trained model is byte-identical`)
      })
    }
  },
)

t.test(
  'the loss is the cross-entropy of the full logits over the counted targets (the output projection skips the others)',
  async (t) => {
    const vocab = 150
    const model = await LlamaModel.random(tinyRawConfig({ layers: 3, vocab }), { seed: 4 })
    await model.setTrainable(model.parameters().map((p) => p.name))
    const [B, T] = [3, 12]
    const ids = tokens(B, T, vocab, 2)
    // Row 0: a 4-token prompt; row 1: prompt and 5 tokens of right padding; row 2: every token counted.
    const labels = ids.map((v, i) => {
      const [row, t] = [Math.floor(i / T), i % T]
      return (row < 2 && t < 4) || (row === 1 && t >= T - 5) ? -100 : v
    })
    const { logits } = await model.forward({ data: ids, shape: [B, T] })
    let sum = 0
    let count = 0
    for (let row = 0; row < B; row++) {
      for (let t = 0; t + 1 < T; t++) {
        const target = labels[row * T + t + 1]!
        if (target === -100) continue
        const at = (row * T + t) * vocab
        let max = -Infinity
        for (let v = 0; v < vocab; v++) max = Math.max(max, logits[at + v]!)
        let z = 0
        for (let v = 0; v < vocab; v++) z += Math.exp(logits[at + v]! - max)
        sum += max + Math.log(z) - logits[at + target]!
        count++
      }
    }
    const expected = sum / count
    const loss = await model.native.loss(ids, labels, B, T)
    t.equal(loss.tokens, count)
    t.ok(Math.abs(loss.loss - expected) <= 1e-5 * expected, `loss ${loss.loss} = ${expected} from the full logits`)
    const step = await model.native.trainStep(ids, labels, B, T, STEP)
    t.ok(Math.abs(step.loss - expected) <= 1e-5 * expected, `training step's loss ${step.loss}`)
    model.dispose()
  },
)

t.test(
  'bench <train.yaml> times the step train runs: the same batches and the same losses, for every setting',
  async (t) => {
    const { dir, pro, data } = await proSetup(t)
    const yaml = join(dir, 'train.yaml')
    writeFileSync(
      yaml,
      `${[
        `model_name_or_path: ${pro}`,
        'stage: sft',
        'finetuning_type: freeze',
        'use_llama_pro: true',
        'freeze_trainable_layers: 2',
        `dataset: ${data.alpaca}`,
        'template: default',
        'cutoff_len: 64',
        'per_device_train_batch_size: 4',
        'learning_rate: 3.0e-3',
        'max_steps: 3',
        'logging_steps: 1',
        'save_strategy: "no"',
        `output_dir: ${join(dir, 'out')}`,
      ].join('\n')}\n`,
    )
    const report = JSON.parse(
      (
        await run(
          process.execPath,
          [CLI, 'bench', yaml, '--steps', '2', '--warmup', '1', '--gradient-checkpointing', 'on,off,all', '--json'],
          { cwd: dir },
        )
      ).stdout,
    )
    t.same(
      report.results.map((r: { checkpointing: string }) => r.checkpointing),
      ['on', 'off', 'all'],
    )
    t.same(report.config.trainableLayerIds, [2, 5])
    t.notOk(existsSync(join(dir, 'out')), 'the bench writes nothing to output_dir')
    await run(process.execPath, [CLI, 'train', yaml], { cwd: dir })
    const logged = readFileSync(join(dir, 'out', 'trainer_log.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l).loss)
    for (const r of report.results as { checkpointing: string; losses: number[]; msPerStep: { median: number } }[]) {
      t.same(
        r.losses.map((l) => Number(l.toFixed(6))),
        logged,
        `${r.checkpointing}: the losses train logs for those steps`,
      )
      t.ok(r.msPerStep.median > 0)
    }
    const shapes = report.shapes.flat() as [number, number][]
    t.ok(
      shapes.every(([b, seq]) => b === 4 && seq <= 64),
      `the run's padded batches: ${JSON.stringify(shapes)}`,
    )
    const bad = await run(process.execPath, [CLI, 'bench', yaml, '--batch', '2']).then(
      () => null,
      (e) => e,
    )
    t.equal(bad?.code, 2, '--batch with a YAML is a usage error')
    t.match(bad?.stderr, /--batch does not apply to a training YAML/)
  },
)
