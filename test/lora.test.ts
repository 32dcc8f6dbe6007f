/**
 * LoRA (finetuning_type: lora): target selection as LLaMA-Factory's, the native adapter math against an independent
 * PyTorch computation (test/reference/lora_reference.py: W x + scale · B A x written out by hand), PEFT's folder
 * format in and out, merge, and exact resume. The check against PEFT itself is bench/peft-parity.py (opt-in venv).
 */
import t from 'tap'
import { existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { loraPolicy } from '../lib/adapters/lora-targets.js'
import { mergeAdapter } from '../lib/adapters/merge-adapter.js'
import { readSafetensorsHeader } from '../lib/checkpoint/safetensors.js'
import { expandCheckpoint } from '../lib/expand/expand-checkpoint.js'
import { mergeDelta } from '../lib/merge/merge-delta.js'
import { LlamaModel } from '../lib/index.js'
import { freezePolicy } from '../lib/policy/freeze-policy.js'
import { planTraining } from '../lib/policy/plan.js'
import { flopsPerToken } from '../lib/bench/flops.js'
import { parseStrategies } from '../lib/bench/strategies.js'
import { parseModelConfig } from '../lib/checkpoint/config.js'
import { parseTrainConfig } from '../lib/train/config.js'
import { train } from '../lib/train/trainer.js'
import { REPO_ROOT, runPythonJson } from './helpers/python.js'
import { tinyRawConfig, writeTinyModel } from './helpers/tiny-model.js'
import { writeDatasets, writeTrainableModel } from './helpers/trainable-model.js'

const LORA_REFERENCE = 'test/reference/lora_reference.py'
const reference = <T>(request: Record<string, unknown>) => runPythonJson<T>([LORA_REFERENCE], JSON.stringify(request))

const ids = (rows: number, seq: number, vocab: number, salt = 0) =>
  Array.from({ length: rows }, (_, r) =>
    Array.from({ length: seq }, (_, i) => (i * 7919 + r * 104729 + salt * 31 + 13) % vocab),
  )

function maxDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!))
  return m
}

const LINEARS = [
  'self_attn.q_proj',
  'self_attn.k_proj',
  'self_attn.v_proj',
  'self_attn.o_proj',
  'mlp.gate_proj',
  'mlp.up_proj',
  'mlp.down_proj',
]

t.test("target selection follows LLaMA-Factory's rules and shares the stride rule with freeze tuning", async (t) => {
  const model = await LlamaModel.random(tinyRawConfig({ layers: 6, kvHeads: 2 }), { seed: 1 })
  const params = model.parameters()
  model.dispose()
  const pro = loraPolicy(6, params, { useLlamaPro: true, freezeTrainableLayers: 2 })
  t.same(
    pro.targets,
    [2, 5].flatMap((l) => LINEARS.map((m) => `model.layers.${l}.${m}`)),
    'lora_target all + use_llama_pro: every linear of layers 2 and 5',
  )
  t.same(pro.targetModules, pro.targets, 'find_expanded_modules hands PEFT the full module names')
  t.same(
    pro.trainable,
    pro.targets.flatMap((m) => [`${m}.lora_A.weight`, `${m}.lora_B.weight`]),
  )
  for (const [layers, n] of [
    [6, 2],
    [6, 3],
    [8, 4],
    [12, 3],
  ] as const) {
    const names = Array.from({ length: layers }, (_, l) => ({
      name: `model.layers.${l}.self_attn.q_proj.weight`,
      shape: [4, 4],
    }))
    t.same(
      loraPolicy(layers, names, { useLlamaPro: true, freezeTrainableLayers: n }).trainableLayerIds,
      freezePolicy(
        layers,
        names.map((p) => p.name),
        { useLlamaPro: true, freezeTrainableLayers: n },
      ).trainableLayerIds,
      `${layers} layers, ${n} blocks: the same layers as freeze tuning`,
    )
  }
  const qv = loraPolicy(6, params, { loraTarget: 'q_proj, v_proj' })
  t.same(
    qv.targets,
    Array.from({ length: 6 }, (_, l) => [
      `model.layers.${l}.self_attn.q_proj`,
      `model.layers.${l}.self_attn.v_proj`,
    ]).flat(),
    "a list matches by '.' suffix, as PEFT",
  )
  t.same(
    loraPolicy(6, params, { loraTarget: 'all' }).targetModules.sort(),
    ['down_proj', 'gate_proj', 'k_proj', 'o_proj', 'q_proj', 'up_proj', 'v_proj'],
    'all: short names, lm_head excluded',
  )
  t.throws(() => loraPolicy(6, params, { useLlamaPro: true, freezeTrainableLayers: 4 }), {
    message: /`num_layers` 6 should be divisible by `num_layer_trainable` 4/,
  })
  t.throws(() => loraPolicy(6, params, { useLlamaPro: true, loraTarget: 'self_attn' }), {
    message: /model\.layers\.2\.self_attn, which is not a linear layer/,
  })
  t.throws(() => loraPolicy(6, params, { loraTarget: 'qproj' }), {
    message: /Target modules \["qproj"\] not found in the base model .*valid: all, q_proj/,
  })
  const norm = loraPolicy(6, params, { loraTarget: 'q_proj', additionalTarget: 'norm' })
  t.same(
    norm.fullyTrained,
    params.map((p) => p.name).filter((n) => n.endsWith('norm.weight')),
    "additional_target: norm ends-with-matches every norm, as PEFT's modules_to_save",
  )
  t.throws(
    () =>
      loraPolicy(
        6,
        params.filter((p) => p.name !== 'lm_head.weight'),
        { additionalTarget: 'lm_head' },
      ),
    { message: /ties its output layer/ },
  )
})

t.test('LoRA keys: defaults, LLaMA-Factory checks, unsupported methods named', async (t) => {
  const base = { model_name_or_path: 'm', output_dir: 'o', dataset: 'd' }
  const cfg = parseTrainConfig({ ...base, finetuning_type: 'lora', lora_rank: 4 }, 'x.yaml', '/tmp')
  t.same(
    [cfg.loraRank, cfg.loraAlpha, cfg.loraDropout, cfg.loraTarget, cfg.useRslora, cfg.loraplusLrRatio],
    [4, 8, 0, 'all', false, null],
    'lora_alpha defaults to 2 x rank',
  )
  t.throws(() => parseTrainConfig({ ...base, finetuning_type: 'lora', use_dora: true }, 'x.yaml', '/tmp'), {
    message: /x\.yaml: use_dora: true asks for DoRA .* not support/,
  })
  t.throws(() => parseTrainConfig({ ...base, finetuning_type: 'lora', quantization_bit: 4 }, 'x.yaml', '/tmp'), {
    message: /quantization_bit: 4 asks for QLoRA/,
  })
  t.throws(() => parseTrainConfig({ ...base, finetuning_type: 'lora', pissa_init: true }, 'x.yaml', '/tmp'), {
    message: /pissa_init: true asks for PiSSA/,
  })
  t.throws(() => parseTrainConfig({ ...base, finetuning_type: 'freeze', loraplus_lr_ratio: 16 }, 'x.yaml', '/tmp'), {
    message: /`loraplus_lr_ratio` is only valid for LoRA training/,
  })
  t.equal(
    parseTrainConfig({ ...base, finetuning_type: 'lora', use_dora: false }, 'x.yaml', '/tmp').finetuningType,
    'lora',
    'an unsupported key at its off value is accepted',
  )
})

t.test(
  'adapters: B = 0 leaves the output; gradients reach only A and B of the stride-rule layers; base weights and ' +
    'optimizer untouched',
  async (t) => {
    const model = await LlamaModel.random(tinyRawConfig({ layers: 6, kvHeads: 2, modelType: 'qwen2' }), { seed: 3 })
    const batch = ids(2, 12, 96)
    const before = await model.forward(batch)
    const plan = loraPolicy(6, model.parameters(), { useLlamaPro: true, freezeTrainableLayers: 3 })
    t.same(plan.trainableLayerIds, [1, 3, 5])
    const names = await model.addLora({ targets: plan.targets, rank: 4, alpha: 8, dropout: 0.1, seed: 5 })
    t.same(names, plan.trainable)
    t.equal(
      maxDiff((await model.forward(batch)).logits, before.logits),
      0,
      'B = 0: logits bit-identical to the base model',
    )
    const a = model.parameters().find((p) => p.name === 'model.layers.1.self_attn.q_proj.lora_A.weight')!
    t.same([a.shape, a.dtype], [[4, 32], 'float32'], 'A is [r, in], float32')
    const bound = Math.max(...(await model.native.tensorMaxAbs(plan.targets.map((m) => `${m}.lora_A.weight`))))
    t.ok(
      bound > 0.5 / Math.sqrt(32) && bound <= 1 / Math.sqrt(32),
      `A is kaiming-uniform(a=sqrt 5): |A| <= 1/sqrt(in) (max ${bound})`,
    )
    await model.setTrainable(plan.trainable)
    const frozen = model
      .parameters()
      .filter((p) => !p.requiresGrad)
      .map((p) => p.name)
    const frozenBytes = await Promise.all(frozen.map((n) => model.native.tensorBytes(n, 'F32')))
    model.native.configureOptimizer({ noDecay: [], step: 0, lossScaling: false })
    const step = {
      lossMultiplier: 1,
      lr: 1e-2,
      beta1: 0.9,
      beta2: 0.999,
      eps: 1e-8,
      weightDecay: 0.01,
      maxGradNorm: 1,
      reportParamNorms: false,
      dropoutSeed: 7,
    }
    const flat = Int32Array.from(batch.flat())
    await model.native.trainStep(flat, flat, 2, 12, { ...step, update: true })
    await model.native.trainStep(flat, flat, 2, 12, { ...step, update: false })
    const grads = await model.native.gradients()
    t.same(
      grads.map((g) => g.name).sort(),
      [...plan.trainable].sort(),
      'gradients exist for exactly the adapters of layers 1, 3 and 5',
    )
    t.ok(
      grads.every((g) => g.norm > 0),
      'all non-zero (A too, once B has moved)',
    )
    const after = await Promise.all(frozen.map((n) => model.native.tensorBytes(n, 'F32')))
    t.ok(
      after.every((b, i) => Buffer.from(b).equals(Buffer.from(frozenBytes[i]!))),
      'every base weight is bit-identical after an update',
    )
    t.same(
      model.native.optimizerState().names.sort(),
      plan.trainable.flatMap((n) => [`exp_avg:${n}`, `exp_avg_sq:${n}`]).sort(),
      'AdamW state only for the adapters',
    )
    await t.rejects(model.save(join(t.testdir(), 'x')), {
      message: /carries LoRA adapters; write them with saveAdapter/,
    })
    model.dispose()
  },
)

async function pythonAdapter(
  dir: string,
  base: string,
  spec: Record<string, unknown>,
  name = 'peft-adapter',
): Promise<string> {
  const out = join(dir, name)
  await reference({ cmd: 'make_adapter', base, out, ...spec })
  return out
}

t.test(
  'an adapter with nonzero B (rsLoRA, modules_to_save) gives the logits of W x + scale B A x, unmerged, merged, and ' +
    'through the KV cache',
  async (t) => {
    const dir = t.testdir()
    const base = await writeTinyModel(join(dir, 'base'), { layers: 4, kvHeads: 2, seed: 4 })
    const targets = [1, 3].flatMap((l) => LINEARS.map((m) => `model.layers.${l}.${m}`))
    const adapter = await pythonAdapter(dir, base.dir, {
      targets,
      r: 4,
      alpha: 6,
      use_rslora: true,
      seed: 2,
      modules_to_save: ['norm'],
      full: ['model.norm.weight'],
    })
    const batch = ids(2, 10, base.config.vocabSize, 3)
    const expected = await reference<{ logits: number[] }>({ cmd: 'logits', base: base.dir, adapter, ids: batch })
    const model = await LlamaModel.load(base.dir, { adapter })
    t.same([...model.lora!.targets].sort(), [...targets].sort(), 'the adapted layers are read from the tensor names')
    const ours = await model.forward(batch)
    const plain = await LlamaModel.load(base.dir)
    t.ok(maxDiff((await plain.forward(batch)).logits, expected.logits) > 1e-2, 'the adapter changes the logits')
    plain.dispose()
    const diff = maxDiff(ours.logits, expected.logits)
    t.ok(diff < 1e-4, `logits with the adapter match the independent computation (max |diff| ${diff.toExponential(2)})`)

    const merged = join(dir, 'merged')
    const result = await mergeAdapter(base.dir, adapter, merged)
    t.same([result.merged, result.replaced], [14, 1])
    const check = await reference<{ max_merged_diff: number; max_other_diff: number }>({
      cmd: 'check_merge',
      base: base.dir,
      adapter,
      merged,
    })
    t.ok(
      check.max_merged_diff < 1e-6,
      `merged weights = W + scale B A (max |diff| ${check.max_merged_diff.toExponential(2)})`,
    )
    t.equal(check.max_other_diff, 0, 'every other tensor is copied unchanged')
    const mergedModel = await LlamaModel.load(merged)
    t.ok(
      maxDiff((await mergedModel.forward(batch)).logits, ours.logits) < 1e-4,
      'the merged model computes what the adapter does',
    )
    const prompt = { ids: batch[0]!.slice(0, 5) }
    const [g1, g2] = [
      await model.generate(prompt, { maxNewTokens: 6, temperature: 0 }),
      await mergedModel.generate(prompt, { maxNewTokens: 6, temperature: 0 }),
    ]
    t.same(g1.tokenIds, g2.tokenIds, 'greedy generation through the KV cache with the adapter = with the merged model')
    model.dispose()
    mergedModel.dispose()
  },
)

t.test('merge <base> <adapter_dir> <out>: an adapter folder in the delta place is recognised and merged', async (t) => {
  const dir = t.testdir({ empty: {} })
  const base = await writeTinyModel(join(dir, 'base'), { layers: 2, kvHeads: 2, seed: 5 })
  const targets = [0, 1].flatMap((l) => LINEARS.map((m) => `model.layers.${l}.${m}`))
  const adapter = await pythonAdapter(dir, base.dir, { targets, r: 2, alpha: 4, use_rslora: false, seed: 3 })
  const merged = join(dir, 'merged')
  const cli = join(REPO_ROOT, 'dist', 'cli', 'main.js')
  const { stdout } = await promisify(execFile)(process.execPath, [cli, 'merge', base.dir, adapter, merged])
  t.match(stdout, /Merged the LoRA adapter .*peft-adapter into .*\(14 linear weights\)/)
  const request = { cmd: 'check_merge', base: base.dir, adapter, merged }
  const check = await reference<{ max_merged_diff: number; max_other_diff: number }>(request)
  const diff = check.max_merged_diff
  t.ok(diff < 1e-6, `merged weights = W + scale B A (max |diff| ${diff.toExponential(2)})`)
  t.equal(check.max_other_diff, 0, 'every other tensor is copied unchanged')

  const out = join(dir, 'x')
  await t.rejects(mergeDelta(base.dir, adapter, out), {
    code: 'LLAMAPRO_MERGE',
    message: /peft-adapter is a PEFT LoRA adapter \(it has adapter_config\.json\), not a delta: .*--adapter <adapter/,
  })
  const noDelta = /empty: no delta\.safetensors \(a delta is written/
  await t.rejects(mergeDelta(base.dir, join(dir, 'empty'), out), { code: 'LLAMAPRO_MERGE', message: noDelta })
  const missing = /missing: no such delta folder or file/
  await t.rejects(mergeDelta(base.dir, join(dir, 'missing'), out), { code: 'LLAMAPRO_MERGE', message: missing })
  t.notOk(existsSync(join(dir, 'x')), 'nothing was written')
})

t.test(
  'finetuning_type: lora + use_llama_pro trains the expanded blocks only and writes a PEFT adapter; resume is ' +
    'bit-identical',
  async (t) => {
    const dir = t.testdir()
    await writeTrainableModel(join(dir, 'base'), { seed: 3 })
    await expandCheckpoint(join(dir, 'base'), join(dir, 'pro'), { numExpand: 2 })
    const data = await writeDatasets(dir)
    const common = {
      model_name_or_path: join(dir, 'pro'),
      stage: 'pt',
      dataset: data.pt,
      finetuning_type: 'lora',
      use_llama_pro: true,
      freeze_trainable_layers: 2,
      lora_rank: 4,
      lora_dropout: 0.1,
      cutoff_len: 48,
      per_device_train_batch_size: 2,
      gradient_accumulation_steps: 2,
      learning_rate: 1e-2,
      max_steps: 6,
      logging_steps: 1,
      save_steps: 1000,
      weight_decay: 0.01,
      loraplus_lr_ratio: 4,
      additional_target: 'norm',
    }
    const cfg = (raw: Record<string, unknown>) => parseTrainConfig({ ...common, ...raw }, 'test config', dir)
    const uninterrupted: number[] = []
    await train(cfg({ output_dir: join(dir, 'a') }), {
      onEvent: (e) => e.type === 'step' && uninterrupted.push(e.loss),
    })
    const out = join(dir, 'a')
    t.notOk(existsSync(join(out, 'model.safetensors')), 'no full model is written')
    const config = JSON.parse(readFileSync(join(out, 'adapter_config.json'), 'utf8'))
    const layers = [2, 5] // where expand put the new blocks of a 4-layer model with 2 added
    const targets = layers.flatMap((l) => LINEARS.map((m) => `model.layers.${l}.${m}`))
    t.match(config, {
      peft_type: 'LORA',
      task_type: 'CAUSAL_LM',
      r: 4,
      lora_alpha: 8,
      lora_dropout: 0.1,
      use_rslora: false,
      target_modules: targets,
      modules_to_save: ['norm'],
      base_model_name_or_path: join(dir, 'pro'),
    })
    const file = await readSafetensorsHeader(join(out, 'adapter_model.safetensors'))
    const norms = [
      'model.norm.weight',
      ...Array.from({ length: 6 }, (_, l) => [
        `model.layers.${l}.input_layernorm.weight`,
        `model.layers.${l}.post_attention_layernorm.weight`,
      ]).flat(),
    ]
    t.same(
      file.tensors.map((x) => x.name).sort(),
      [
        ...targets.flatMap((m) => [`base_model.model.${m}.lora_A.weight`, `base_model.model.${m}.lora_B.weight`]),
        ...norms.map((n) => `base_model.model.${n}`),
      ].sort(),
      "PEFT's tensor names: lora_A/lora_B of the expanded blocks' linears, modules_to_save as base_model.model.<param>",
    )

    // The saved adapter is the trained math: the independent reference computes the same logits from it.
    const batch = ids(2, 10, 320, 1)
    const expected = await reference<{ logits: number[] }>({
      cmd: 'logits',
      base: join(dir, 'pro'),
      adapter: out,
      ids: batch,
    })
    const loaded = await LlamaModel.load(join(dir, 'pro'), { adapter: out })
    const diff = maxDiff((await loaded.forward(batch)).logits, expected.logits)
    t.ok(diff < 1e-4, `the saved adapter reloads and matches the reference (max |diff| ${diff.toExponential(2)})`)
    loaded.dispose()

    // plan: the same adapters, counted from the headers alone
    const plan = await planTraining({
      modelDir: join(dir, 'pro'),
      options: {
        finetuningType: 'lora',
        useLlamaPro: true,
        freezeTrainableLayers: 2,
        loraRank: 4,
        additionalTarget: 'norm',
      },
      batch: 2,
      seq: 48,
      computeDtype: 'float32',
      masterDtype: 'float32',
    })
    const adapterNumel = file.tensors.reduce((sum, x) => sum + x.shape.reduce((a, b) => a * b, 1), 0)
    t.equal(plan.trainableParams, adapterNumel, 'plan counts exactly the parameters the adapter file holds')
    t.equal(plan.memory.optimizer, 2 * 4 * adapterNumel, 'and AdamW state for them only')
    t.match(plan.explanation.join('\n'), /exactly the 2 expanded blocks/)

    const controller = new AbortController()
    const before: number[] = []
    await train(cfg({ output_dir: join(dir, 'b') }), {
      signal: controller.signal,
      onEvent: (e) => e.type === 'step' && (before.push(e.loss), e.step === 3 && controller.abort()),
    })
    t.ok(existsSync(join(dir, 'b', 'checkpoint-3', 'adapter_model.safetensors')), 'the checkpoint holds the adapter')
    const after: number[] = []
    await train(cfg({ output_dir: join(dir, 'b'), resume_from_checkpoint: true }), {
      onEvent: (e) => e.type === 'step' && after.push(e.loss),
    })
    t.same(
      [...before, ...after],
      uninterrupted,
      'identical loss sequence after resume (dropout, LoRA+, modules_to_save)',
    )
    t.ok(
      readFileSync(join(dir, 'a', 'adapter_model.safetensors')).equals(
        readFileSync(join(dir, 'b', 'adapter_model.safetensors')),
      ),
      'and a byte-identical adapter',
    )
  },
)

t.test('adapter errors name the folder and what is wrong', async (t) => {
  const dir = t.testdir()
  const base = await writeTinyModel(join(dir, 'base'), { layers: 2, seed: 1 })
  await t.rejects(LlamaModel.load(base.dir, { adapter: join(dir, 'none') }), {
    message: /none is not a PEFT adapter folder: adapter_config.json is missing/,
  })
  const adapter = await pythonAdapter(dir, base.dir, { targets: ['model.layers.1.mlp.up_proj'], r: 2, alpha: 4 })
  const configPath = join(adapter, 'adapter_config.json')
  writeFileSync(configPath, JSON.stringify({ ...JSON.parse(readFileSync(configPath, 'utf8')), use_dora: true }))
  await t.rejects(LlamaModel.load(base.dir, { adapter }), { message: /use_dora: true — DoRA is not supported/ })
  const other = await writeTinyModel(join(dir, 'other'), { layers: 2, hidden: 48, seed: 1 })
  const wrong = await pythonAdapter(
    dir,
    other.dir,
    { targets: ['model.layers.1.mlp.up_proj'], r: 2, alpha: 4 },
    'wrong-adapter',
  )
  await t.rejects(LlamaModel.load(base.dir, { adapter: wrong }), {
    message: /do not fit its weight .*belongs to another model/,
  })
})

t.test('bench knows lora:all and lora:pro:N; FLOPs of an adapter are counted by hand', async (t) => {
  t.same(
    parseStrategies('pro:2,lora:pro:2,lora:all', 6).map((s) => [s.name, s.options.useLlamaPro ?? false, s.lora?.rank]),
    [
      ['pro:2', true, undefined],
      ['lora:pro:2', true, 8],
      ['lora:all', false, 8],
    ],
  )
  t.throws(() => parseStrategies('lora:2', 6), { message: /lora takes all or pro:N/ })
  const config = parseModelConfig(tinyRawConfig({ layers: 2, kvHeads: 2 }), 'config')
  const [h, f, q, kv, r] = [
    config.hiddenSize,
    config.intermediateSize,
    config.numHeads * config.headDim,
    config.numKvHeads * config.headDim,
    4,
  ]
  const targets = new Set(LINEARS.map((m) => `model.layers.1.${m}`))
  const plain = flopsPerToken(config, new Set(), 16)
  const lora = flopsPerToken(config, new Set(), 16, { rank: r, targets })
  const adapterIO = h + q + (h + kv) * 2 + (q + h) + (h + f) * 2 + (f + h) // in + out of q, k, v, o, gate, up, down
  t.equal(lora.forward - plain.forward, 2 * r * adapterIO, 'forward: 2r(in + out) per adapter')
  t.equal(lora.weightGradients, 2 * r * adapterIO, 'weight gradients of A and B only')
  t.ok(lora.activationGradients > plain.activationGradients, 'backward now runs through layer 1 and the head')
})

t.test(
  'LoRA data parallel: 2 ranks × batch 2 give the losses of 1 process × batch 4 (also with ZeRO-1); only adapter ' +
    'gradients travel',
  async (t) => {
    const dir = t.testdir()
    await writeTrainableModel(join(dir, 'base'), { seed: 3 })
    await expandCheckpoint(join(dir, 'base'), join(dir, 'pro'), { numExpand: 2 })
    const data = await writeDatasets(dir)
    const yaml = (name: string, raw: Record<string, unknown>) => {
      const path = join(dir, `${name}.yaml`)
      writeFileSync(
        path,
        JSON.stringify({
          model_name_or_path: join(dir, 'pro'),
          dataset: data.alpaca,
          stage: 'sft',
          finetuning_type: 'lora',
          use_llama_pro: true,
          freeze_trainable_layers: 2,
          lora_rank: 4,
          cutoff_len: 48,
          learning_rate: 1e-2,
          gradient_accumulation_steps: 2,
          logging_steps: 1,
          save_steps: 1000,
          threads: 1,
          max_steps: 3,
          ...raw,
        }),
      )
      return path
    }
    const logged = (out: string) =>
      readFileSync(join(out, 'trainer_log.jsonl'), 'utf8')
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as { loss?: number; allreduce_bytes?: number })
        .filter((r) => r.loss !== undefined)
    await train(yaml('single', { per_device_train_batch_size: 4, output_dir: join(dir, 'single') }), {
      distributed: null,
    })
    const run = promisify(execFile)
    await run(
      process.execPath,
      [
        join(REPO_ROOT, 'dist', 'cli', 'main.js'),
        'train',
        yaml('pair', { per_device_train_batch_size: 2, output_dir: join(dir, 'pair') }),
        '--nproc-per-node',
        '2',
      ],
      { timeout: 180_000 },
    )
    const [a, b] = [logged(join(dir, 'single')), logged(join(dir, 'pair'))]
    t.equal(b.length, 3)
    for (let i = 0; i < a.length; i++)
      t.ok(
        Math.abs(a[i]!.loss! - b[i]!.loss!) <= 2e-6 * Math.abs(a[i]!.loss!),
        `step ${i + 1}: loss ${b[i]!.loss} (2 ranks) vs ${a[i]!.loss} (1 process)`,
      )
    const file = await readSafetensorsHeader(join(dir, 'pair', 'adapter_model.safetensors'))
    const adapterBytes = file.tensors.reduce((s, x) => s + x.end - x.begin, 0)
    t.equal(
      b[0]!.allreduce_bytes,
      adapterBytes,
      `each rank all-reduced exactly the adapters' float32 gradients (${adapterBytes} bytes per step)`,
    )
    // ZeRO stage 1 shards the adapters' AdamW state over the ranks: the same losses.
    await run(
      process.execPath,
      [
        join(REPO_ROOT, 'dist', 'cli', 'main.js'),
        'train',
        yaml('zero', { per_device_train_batch_size: 2, zero_stage: 1, output_dir: join(dir, 'zero') }),
        '--nproc-per-node',
        '2',
      ],
      { timeout: 180_000 },
    )
    const z = logged(join(dir, 'zero'))
    for (let i = 0; i < a.length; i++)
      t.ok(
        Math.abs(a[i]!.loss! - z[i]!.loss!) <= 2e-6 * Math.abs(a[i]!.loss!),
        `zero_stage 1, step ${i + 1}: loss ${z[i]!.loss} vs ${a[i]!.loss}`,
      )
  },
)

t.test(
  'bfloat16 compute with float32 adapters: base weights stay bfloat16 and frozen, the adapters train in float32',
  async (t) => {
    const model = await LlamaModel.random(tinyRawConfig({ layers: 4, kvHeads: 2 }), { seed: 8, dtype: 'bfloat16' })
    const batch = ids(2, 10, 96, 4)
    const before = await model.forward(batch)
    const plan = loraPolicy(4, model.parameters(), { loraTarget: 'q_proj,down_proj' })
    await model.addLora({ targets: plan.targets, rank: 2, alpha: 4 })
    t.equal(maxDiff((await model.forward(batch)).logits, before.logits), 0, 'B = 0: the same bfloat16 logits')
    await model.setTrainable(plan.trainable, { masterDtype: 'float32' })
    const dtypes = new Map(model.parameters().map((p) => [p.name, p.dtype]))
    t.ok(
      plan.trainable.every((n) => dtypes.get(n) === 'float32'),
      'adapters are float32 master weights',
    )
    t.equal(dtypes.get('model.layers.0.self_attn.q_proj.weight'), 'bfloat16', 'the base weight stays bfloat16')
    model.native.configureOptimizer({ noDecay: [], step: 0, lossScaling: false })
    const flat = Int32Array.from(batch.flat())
    const result = await model.native.trainStep(flat, flat, 2, 10, {
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
    t.ok(result.updated && Number.isFinite(result.loss))
    t.ok(
      (await model.native.tensorMaxAbs(plan.targets.map((m) => `${m}.lora_B.weight`))).every((v) => v > 0),
      'every B moved',
    )
    model.dispose()
  },
)

t.test(
  'create_new_adapter merges adapter_name_or_path first: the same run as training a new adapter on the merged model',
  async (t) => {
    const dir = t.testdir()
    await writeTrainableModel(join(dir, 'base'), { seed: 5, layers: 2 })
    const data = await writeDatasets(dir)
    const adapter = await pythonAdapter(dir, join(dir, 'base'), {
      targets: ['model.layers.0.self_attn.q_proj', 'model.layers.1.mlp.down_proj'],
      r: 2,
      alpha: 4,
      seed: 3,
    })
    await mergeAdapter(join(dir, 'base'), adapter, join(dir, 'merged'))
    const common = {
      stage: 'pt',
      dataset: data.pt,
      finetuning_type: 'lora',
      lora_rank: 2,
      lora_target: 'v_proj,up_proj',
      cutoff_len: 32,
      per_device_train_batch_size: 2,
      max_steps: 2,
      logging_steps: 1,
      save_steps: 1000,
      learning_rate: 1e-2,
    }
    const losses: Record<string, number[]> = { a: [], b: [] }
    const temporaries = () => readdirSync(tmpdir()).filter((n) => n.startsWith('llamapro-merged-')).length
    const before = temporaries()
    await train(
      parseTrainConfig(
        {
          ...common,
          model_name_or_path: join(dir, 'base'),
          adapter_name_or_path: adapter,
          create_new_adapter: true,
          output_dir: join(dir, 'a'),
        },
        'a',
        dir,
      ),
      { onEvent: (e) => e.type === 'step' && losses.a!.push(e.loss) },
    )
    t.equal(temporaries(), before, 'the temporary merged model is removed')
    await train(
      parseTrainConfig({ ...common, model_name_or_path: join(dir, 'merged'), output_dir: join(dir, 'b') }, 'b', dir),
      { onEvent: (e) => e.type === 'step' && losses.b!.push(e.loss) },
    )
    t.same(losses.a, losses.b, 'the same losses')
    t.ok(
      readFileSync(join(dir, 'a', 'adapter_model.safetensors')).equals(
        readFileSync(join(dir, 'b', 'adapter_model.safetensors')),
      ),
      'and the same new adapter',
    )
    t.equal(
      JSON.parse(readFileSync(join(dir, 'a', 'adapter_config.json'), 'utf8')).base_model_name_or_path,
      join(dir, 'base'),
      'recorded against the base model, as LLaMA-Factory does',
    )
  },
)
