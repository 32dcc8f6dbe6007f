import t, { type Test } from 'tap'
import { execFile } from 'node:child_process'
import { copyFileSync, existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { openCheckpoint } from '../lib/checkpoint/checkpoint.js'
import { expandCheckpoint } from '../lib/expand/expand-checkpoint.js'
import { LlamaModel } from '../lib/index.js'
import { mergeDelta } from '../lib/merge/merge-delta.js'
import { parseTrainConfig, type TrainConfig } from '../lib/train/config.js'
import type { TrainEvent } from '../lib/train/events.js'
import { train } from '../lib/train/trainer.js'
import { loadTokenizer } from '../lib/data/tokenizer.js'
import { shuffledIndices } from '../lib/data/batches.js'
import { writeDatasets, writeTrainableModel } from './helpers/trainable-model.js'
import { REPO_ROOT, pythonSnippet } from './helpers/python.js'

const CLI = join(REPO_ROOT, 'dist', 'cli', 'main.js')
const run = promisify(execFile)

async function setup(t: Test) {
  const dir = t.testdir()
  await writeTrainableModel(join(dir, 'base'), { seed: 3 })
  await expandCheckpoint(join(dir, 'base'), join(dir, 'pro'), { numExpand: 2 })
  const data = await writeDatasets(dir)
  return { dir, base: join(dir, 'base'), pro: join(dir, 'pro'), data }
}

const config = (dir: string, raw: Record<string, unknown>): TrainConfig =>
  parseTrainConfig(
    {
      finetuning_type: 'freeze',
      use_llama_pro: true,
      freeze_trainable_layers: 2,
      cutoff_len: 48,
      per_device_train_batch_size: 4,
      learning_rate: 3e-3,
      max_steps: 24,
      logging_steps: 4,
      save_steps: 1000,
      ...raw,
    },
    'test config',
    dir,
  )

function tensorBytes(ckptDir: string) {
  return openCheckpoint(ckptDir).then(
    (c) => new Map(c.tensors.map((x) => [x.name, readFileSync(x.file).subarray(x.offset, x.offset + x.nbytes)])),
  )
}

async function checkLlamaProOutput(t: Test, input: string, output: string, newLayers: number[]) {
  const [before, after] = await Promise.all([tensorBytes(input), tensorBytes(output)])
  t.same([...after.keys()], [...before.keys()])
  const isNew = (name: string) => newLayers.some((l) => name.startsWith(`model.layers.${l}.`))
  const frozenChanged = [...before]
    .filter(([name, bytes]) => !isNew(name) && !bytes.equals(after.get(name)!))
    .map(([n]) => n)
  const newUnchanged = [...before]
    .filter(([name, bytes]) => isNew(name) && bytes.equals(after.get(name)!))
    .map(([n]) => n)
  t.same(frozenChanged, [], 'every frozen tensor is byte-identical to the input')
  t.same(newUnchanged, [], 'every tensor of the new blocks changed')
  const reloaded = await LlamaModel.load(output)
  t.equal(
    reloaded.config.numLayers,
    before.size > 0 ? JSON.parse(readFileSync(join(input, 'config.json'), 'utf8')).num_hidden_layers : 0,
  )
  reloaded.dispose()
}

t.test('pt with use_llama_pro: loss falls, only the new blocks change, the output loads back', async (t) => {
  const { dir, pro, data } = await setup(t)
  const out = join(dir, 'out')
  const losses: number[] = []
  const result = await train(
    config(dir, { model_name_or_path: pro, stage: 'pt', dataset: data.pt, output_dir: out, plot_loss: true }),
    {
      onEvent: (e) => e.type === 'step' && losses.push(e.loss),
    },
  )
  t.equal(result.globalStep, 24)
  const first = losses.slice(0, 4).reduce((a, b) => a + b) / 4
  const last = losses.slice(-4).reduce((a, b) => a + b) / 4
  t.ok(last < first - 0.1, `loss falls: ${first.toFixed(3)} -> ${last.toFixed(3)}`)
  await checkLlamaProOutput(t, pro, out, [2, 5])
  const log = readFileSync(join(out, 'trainer_log.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l))
  t.equal(log.length, 6)
  t.same(Object.keys(log[0].layer_grad_norms).sort(), ['2', '5'], 'per-layer gradient norms of the trainable layers')
  for (const key of [
    'current_steps',
    'total_steps',
    'loss',
    'lr',
    'grad_norm',
    'tokens_per_second',
    'elapsed_time',
    'elapsed_seconds',
  ])
    t.ok(key in log[0], key)
  for (const file of [
    'training_loss.png',
    'training_loss.svg',
    'all_results.json',
    'trainer_state.json',
    'tokenizer.json',
    'llamapro_expansion.json',
  ]) {
    t.ok(existsSync(join(out, file)), file)
  }
  t.same(readFileSync(join(out, 'training_loss.png')).subarray(1, 4).toString(), 'PNG')
})

t.test(
  'sft (alpaca and sharegpt, the model chat template): prompt tokens masked, loss falls, only new blocks change',
  async (t) => {
    const { dir, pro, data } = await setup(t)
    const out = join(dir, 'out')
    const losses: number[] = []
    await train(
      config(dir, {
        model_name_or_path: pro,
        stage: 'sft',
        template: 'model',
        dataset: `${data.alpaca},${data.sharegpt}`,
        output_dir: out,
        val_size: 0.1,
      }),
      {
        onEvent: (e) => e.type === 'step' && losses.push(e.loss),
      },
    )
    t.ok(losses.slice(-4).reduce((a, b) => a + b) < losses.slice(0, 4).reduce((a, b) => a + b), 'loss falls')
    await checkLlamaProOutput(t, pro, out, [2, 5])
    const log = readFileSync(join(out, 'trainer_log.jsonl'), 'utf8')
    t.match(log, /"eval_loss"/, 'evaluation on the held-out split is logged')
  },
)

t.test('resuming after an abort gives the same losses as an uninterrupted run', async (t) => {
  const { dir, pro, data } = await setup(t)
  const common = {
    model_name_or_path: pro,
    stage: 'pt',
    dataset: data.pt,
    max_steps: 10,
    logging_steps: 1,
    gradient_accumulation_steps: 2,
    per_device_train_batch_size: 2,
    weight_decay: 0.01,
    warmup_steps: 2,
    lr_scheduler_type: 'cosine',
  }
  const uninterrupted: number[] = []
  await train(config(dir, { ...common, output_dir: join(dir, 'a') }), {
    onEvent: (e) => e.type === 'step' && uninterrupted.push(e.loss),
  })

  const controller = new AbortController()
  const before: number[] = []
  const stopped = await train(config(dir, { ...common, output_dir: join(dir, 'b') }), {
    signal: controller.signal,
    onEvent: (e) => {
      if (e.type !== 'step') return
      before.push(e.loss)
      if (e.step === 4) controller.abort()
    },
  })
  t.ok(stopped.aborted)
  t.equal(stopped.globalStep, 4)
  t.same(
    stopped.checkpoints.map((p) => p.split('/').pop()),
    ['checkpoint-4'],
    'the abort saved a checkpoint',
  )
  t.notOk(existsSync(join(dir, 'b', 'model.safetensors')), 'no final model for an interrupted run')

  const after: number[] = []
  const resumed = await train(config(dir, { ...common, output_dir: join(dir, 'b'), resume_from_checkpoint: true }), {
    onEvent: (e) => e.type === 'step' && after.push(e.loss),
  })
  t.equal(resumed.globalStep, 10)
  t.same([...before, ...after], uninterrupted, 'identical loss sequence')
  const [a, b] = await Promise.all([tensorBytes(join(dir, 'a')), tensorBytes(join(dir, 'b'))])
  t.ok(
    [...a].every(([name, bytes]) => bytes.equals(b.get(name)!)),
    'and identical final weights',
  )
})

t.test('a trainable layer whose gradient is zero gets a warning', async (t) => {
  const { dir, pro, data } = await setup(t)
  const warnings: string[] = []
  // The layernorms of a fresh identity block feed o_proj/down_proj, which are zero: they get no gradient.
  await train(
    config(dir, {
      model_name_or_path: pro,
      stage: 'pt',
      dataset: data.pt,
      output_dir: join(dir, 'out'),
      freeze_trainable_modules: 'input_layernorm',
      max_steps: 2,
      logging_steps: 1,
    }),
    {
      onEvent: (e) => e.type === 'warning' && warnings.push(e.message),
    },
  )
  t.match(warnings.join('\n'), /trainable layer 2 has a zero gradient at step 1: it is not learning/)
})

t.test('a non-finite loss stops training with a clear error and keeps the last good checkpoint', async (t) => {
  const { dir, pro } = await setup(t)
  // One example holds a character whose (frozen) embedding rows are NaN: the loss becomes NaN exactly when that
  // example's step comes, whatever the arithmetic.
  const tokenizer = await loadTokenizer(pro)
  const poisoned = tokenizer.encode('ζ')
  const ckpt = await openCheckpoint(pro)
  const embed = ckpt.tensors.find((x) => x.name === 'model.embed_tokens.weight')!
  const bytes = readFileSync(embed.file)
  const hidden = embed.shape[1]!
  for (const id of poisoned)
    for (let k = 0; k < hidden; k++) bytes.writeFloatLE(NaN, embed.offset + (id * hidden + k) * 4)
  writeFileSync(embed.file, bytes)
  const examples = Array.from({ length: 6 }, (_, i) => ({
    instruction: 'Add.',
    input: `f(${i})`,
    output: `return x + ${i}${i === 4 ? ' ζ' : ''}`,
  }))
  writeFileSync(join(dir, 'poisoned.jsonl'), examples.map((e) => JSON.stringify(e)).join('\n'))
  const seed = 3
  const order = shuffledIndices(6, seed) // the trainer's data order for epoch 0 (sft, batch size 1, no packing)
  const badStep = order.indexOf(4) + 1
  t.ok(badStep > 1, `the poisoned example comes at step ${badStep}`)
  const out = join(dir, 'out')
  await t.rejects(
    train(
      config(dir, {
        model_name_or_path: pro,
        stage: 'sft',
        dataset: 'poisoned.jsonl',
        cutoff_len: 64,
        per_device_train_batch_size: 1,
        seed,
        output_dir: out,
        max_steps: 6,
        save_steps: 1,
      }),
    ),
    {
      code: 'LLAMAPRO_NONFINITE',
      message: new RegExp(
        `the loss is not finite \\(NaN\\) at step ${badStep}; training stopped without saving this state\\. The last ` +
          `good checkpoint is .*checkpoint-${badStep - 1}\\.`,
      ),
    },
  )
  t.ok(existsSync(join(out, `checkpoint-${badStep - 1}`, 'model.safetensors')), 'the last good checkpoint is kept')
  t.notOk(existsSync(join(out, `checkpoint-${badStep}`)), 'nothing is saved from the bad step')
  t.notOk(existsSync(join(out, 'model.safetensors')), 'and no final model is written')
})

t.test('configuration and data errors name the key, file or line', async (t) => {
  const { dir, pro, data } = await setup(t)
  t.throws(() => config(dir, { model_name_or_path: pro, dataset: data.pt, output_dir: 'x', learning_rte: 1e-4 }), {
    code: 'LLAMAPRO_TRAIN_CONFIG',
    message: /unknown key "learning_rte" \(did you mean "learning_rate"\?\)/,
  })
  t.throws(
    () => config(dir, { model_name_or_path: pro, dataset: data.pt, output_dir: 'x', lr_scheduler_type: 'exp' }),
    { message: /lr_scheduler_type must be one of linear, cosine, constant, constant_with_warmup, got "exp"/ },
  )
  t.throws(() => config(dir, { model_name_or_path: pro, dataset: data.pt, output_dir: 'x', cutoff_len: 'long' }), {
    message: /cutoff_len must be an integer, got "long"/,
  })
  t.throws(() => config(dir, { model_name_or_path: pro, output_dir: 'x' }), { message: /missing key "dataset"/ })
  t.throws(() => config(dir, { model_name_or_path: pro, dataset: data.pt, output_dir: 'x', threads: 5000 }), {
    message: /threads must be an integer <= 1024, got 5000/,
  })
  await t.rejects(
    train(config(dir, { model_name_or_path: pro, stage: 'pt', dataset: 'missing.jsonl', output_dir: join(dir, 'o1') })),
    {
      code: 'LLAMAPRO_DATASET',
      message: /dataset "missing.jsonl" not found: no file .*missing\.jsonl/,
    },
  )
  const bad = join(dir, 'bad.jsonl')
  writeFileSync(bad, '{"text": "ok"}\n{"text": "also ok"}\n{"text": broken}\n')
  await t.rejects(
    train(config(dir, { model_name_or_path: pro, stage: 'pt', dataset: bad, output_dir: join(dir, 'o2') })),
    { message: /bad\.jsonl:3: invalid JSON on this line/ },
  )
  await t.rejects(
    train(config(dir, { model_name_or_path: pro, stage: 'sft', dataset: data.pt, output_dir: join(dir, 'o3') })),
    { message: /code\.jsonl:1: not a recognised record: alpaca needs "instruction" and "output"/ },
  )
  await t.rejects(
    train(config(dir, { model_name_or_path: pro, stage: 'pt', dataset: data.alpaca, output_dir: join(dir, 'o4') })),
    { message: /alpaca\.json:2: stage pt reads raw text from a "text" field/ },
  )
  t.same(
    readdirSync(dir).filter((f) => f.startsWith('o')),
    [],
    'failed runs leave no output folder',
  )
})

t.test('an existing output_dir is refused unless overwrite_output_dir', async (t) => {
  const { dir, pro, data } = await setup(t)
  const out = join(dir, 'out')
  const raw = { model_name_or_path: pro, stage: 'pt', dataset: data.pt, output_dir: out, max_steps: 1 }
  await train(config(dir, raw))
  await t.rejects(train(config(dir, raw)), {
    code: 'LLAMAPRO_OUTPUT_EXISTS',
    message: /set overwrite_output_dir: true/,
  })
  // A file of the user's own and a stale shard from some other run.
  writeFileSync(join(out, 'notes.txt'), 'mine')
  writeFileSync(join(out, 'model-00009-of-00009.safetensors'), 'stale')
  const warnings: string[] = []
  const again = await train(config(dir, { ...raw, overwrite_output_dir: true }), {
    onEvent: (e) => e.type === 'warning' && warnings.push(e.message),
  })
  t.equal(again.globalStep, 1)
  t.equal(readFileSync(join(out, 'notes.txt'), 'utf8'), 'mine', 'overwrite_output_dir removes only what a run writes')
  t.notOk(existsSync(join(out, 'model-00009-of-00009.safetensors')), 'stale weights are removed')
  t.match(warnings.join('\n'), /kept 1 file\(s\) in .*out that a training run does not write: notes\.txt/)
  t.ok(existsSync(join(out, 'model.safetensors')))
})

t.test(
  'an output_dir that is or holds the model or the dataset folder is refused, even with overwrite_output_dir',
  async (t) => {
    const { dir, pro, data } = await setup(t)
    const raw = { model_name_or_path: pro, stage: 'pt', dataset: data.pt, max_steps: 1, overwrite_output_dir: true }
    const modelFiles = readdirSync(pro).sort()
    await t.rejects(train(config(dir, { ...raw, output_dir: pro })), {
      code: 'LLAMAPRO_TRAIN_CONFIG',
      message: /output_dir .*pro is the model \(model_name_or_path\).*choose a folder of its own/,
    })
    await t.rejects(train(config(dir, { ...raw, output_dir: dir })), {
      code: 'LLAMAPRO_TRAIN_CONFIG',
      message: /output_dir .* contains the model \(model_name_or_path\)/,
    })
    const elsewhere = join(dir, 'elsewhere')
    const datasets = join(elsewhere, 'datasets')
    mkdirSync(datasets, { recursive: true })
    writeFileSync(join(elsewhere, 'keep.txt'), 'x')
    copyFileSync(data.pt, join(datasets, 'code.jsonl'))
    await t.rejects(
      train(config(dir, { ...raw, output_dir: elsewhere, dataset_dir: datasets, dataset: 'code.jsonl' })),
      { message: /contains the dataset folder \(dataset_dir\)/ },
    )
    t.same(readdirSync(pro).sort(), modelFiles, 'the model folder is untouched')
    t.ok(existsSync(join(datasets, 'code.jsonl')) && existsSync(join(elsewhere, 'keep.txt')), 'the data is untouched')
  },
)

t.test('gradient accumulation weighs micro-batches by their target tokens: 2 x 1 sequences equal 1 x 2', async (t) => {
  const { dir, pro } = await setup(t)
  // Two sft examples of very different lengths, so a mean of per-batch means would differ from the token mean.
  const examples = [
    { instruction: 'Say it.', input: '', output: 'ok' },
    { instruction: 'Write it out.', input: '', output: 'def add(a, b):\n    return a + b\nassert add(1, 2) == 3' },
  ]
  writeFileSync(join(dir, 'two.json'), JSON.stringify(examples))
  const losses = async (raw: Record<string, unknown>, out: string) => {
    const steps: number[] = []
    await train(
      config(dir, {
        model_name_or_path: pro,
        stage: 'sft',
        template: 'default',
        dataset: 'two.json',
        cutoff_len: 64,
        max_steps: 3,
        learning_rate: 1e-2,
        output_dir: join(dir, out),
        ...raw,
      }),
      {
        onEvent: (e) => e.type === 'step' && steps.push(e.loss),
      },
    )
    return steps
  }
  const whole = await losses({ per_device_train_batch_size: 2, gradient_accumulation_steps: 1 }, 'whole')
  const accumulated = await losses({ per_device_train_batch_size: 1, gradient_accumulation_steps: 2 }, 'accumulated')
  t.equal(whole.length, 3)
  for (let i = 0; i < whole.length; i++)
    t.ok(Math.abs(whole[i]! - accumulated[i]!) < 2e-5, `step ${i + 1}: ${whole[i]} vs ${accumulated[i]}`)
})

t.test('a checkpoint resumes only with the batch size, accumulation and seed it was made with', async (t) => {
  const { dir, pro, data } = await setup(t)
  const out = join(dir, 'out')
  const raw = {
    model_name_or_path: pro,
    stage: 'pt',
    dataset: data.pt,
    output_dir: out,
    max_steps: 3,
    save_steps: 1,
    per_device_train_batch_size: 2,
  }
  await train(config(dir, raw))
  await t.rejects(
    train(
      config(dir, {
        ...raw,
        max_steps: 4,
        per_device_train_batch_size: 3,
        resume_from_checkpoint: join(out, 'checkpoint-2'),
      }),
    ),
    {
      code: 'LLAMAPRO_RESUME',
      message:
        /checkpoint-2 was trained with per_device_train_batch_size: 2, this configuration says 3; resume with per_device_train_batch_size: 2/,
    },
  )
  await t.rejects(
    train(config(dir, { ...raw, max_steps: 4, seed: 7, resume_from_checkpoint: join(out, 'checkpoint-2') })),
    { message: /was trained with seed: 42, this configuration says 7/ },
  )
  const state = JSON.parse(readFileSync(join(out, 'checkpoint-2', 'trainer_state.json'), 'utf8'))
  t.equal(state.optimizer_step, 2, "AdamW's own step count is saved")
  t.equal(state.logging_window.steps, 2, 'the two steps since the last log line (logging_steps 4) are carried over')
  t.ok(state.logging_window.loss > 0)
})

t.test(
  'token ids the model has no embedding for are refused before the model is loaded, naming the tokenizer',
  async (t) => {
    const { dir, pro } = await setup(t)
    const tokenizerPath = join(pro, 'tokenizer.json')
    const tokenizer = JSON.parse(readFileSync(tokenizerPath, 'utf8'))
    const vocab = JSON.parse(readFileSync(join(pro, 'config.json'), 'utf8')).vocab_size
    tokenizer.added_tokens.push({
      id: vocab + 5,
      content: '<|extra|>',
      single_word: false,
      lstrip: false,
      rstrip: false,
      normalized: false,
      special: true,
    })
    writeFileSync(tokenizerPath, JSON.stringify(tokenizer))
    writeFileSync(join(dir, 'extra.jsonl'), `${JSON.stringify({ text: 'def f(x): <|extra|> return x' })}\n`)
    // The data is tokenized by the Rust tokenizers library, as in Python: the id it gives the added token is Python's.
    const id = await pythonSnippet<number>(
      'import json,sys\nfrom tokenizers import ' +
        'Tokenizer\nd=json.load(sys.stdin)\nprint(json.dumps(Tokenizer.from_file(d["path"]).token_to_id("<|extra|>")))',
      { path: tokenizerPath },
    )
    t.ok(id >= vocab, `the added token's id ${id} is outside the model's vocab_size ${vocab}`)
    await t.rejects(
      train(
        config(dir, {
          model_name_or_path: pro,
          stage: 'pt',
          dataset: 'extra.jsonl',
          output_dir: join(dir, 'out'),
          cutoff_len: 8,
        }),
      ),
      {
        code: 'LLAMAPRO_TOKENIZER',
        message: new RegExp(
          `the tokenizer in .*pro gives token id ${id}, but the model's vocab_size is ${vocab} \\(valid ids ` +
            `0\\.\\.${vocab - 1}\\)`,
        ),
      },
    )
  },
)

t.test('save_delta writes only the trained tensors, and merge puts them back', async (t) => {
  const { dir, pro, data } = await setup(t)
  const out = join(dir, 'out')
  await train(
    config(dir, {
      model_name_or_path: pro,
      stage: 'pt',
      dataset: data.pt,
      output_dir: out,
      max_steps: 3,
      save_delta: true,
    }),
  )
  const record = JSON.parse(readFileSync(join(out, 'delta', 'delta.json'), 'utf8'))
  t.ok(
    record.tensors.every((n: string) => /^model\.layers\.(2|5)\./.test(n)),
    'the delta holds the new blocks only',
  )
  await mergeDelta(pro, join(out, 'delta'), join(dir, 'merged'))
  const [trained, merged] = await Promise.all([tensorBytes(out), tensorBytes(join(dir, 'merged'))])
  t.ok(
    [...trained].every(([name, bytes]) => bytes.equals(merged.get(name)!)),
    'base + delta = the trained model, byte for byte',
  )
  const cli = await run(process.execPath, [CLI, 'merge', pro, join(out, 'delta'), join(dir, 'merged')]).catch((e) => e)
  t.equal(cli.code, 1)
  t.match(cli.stderr, /already exists and is not empty; pass --force/)
})

t.test('the event loop keeps running during training', async (t) => {
  const { dir, pro, data } = await setup(t)
  let ticks = 0
  const timer = setInterval(() => ticks++, 1)
  const started = performance.now()
  await train(
    config(dir, {
      model_name_or_path: pro,
      stage: 'pt',
      dataset: data.pt,
      output_dir: join(dir, 'out'),
      max_steps: 6,
      per_device_train_batch_size: 8,
      cutoff_len: 128,
    }),
  )
  clearInterval(timer)
  const elapsed = performance.now() - started
  t.ok(ticks > elapsed / 20, `${ticks} timer callbacks ran during ${elapsed.toFixed(0)} ms of training`)
})

t.test('llamapro train: YAML plus overrides, progress lines, warnings for keys that do nothing here', async (t) => {
  const { dir, pro, data } = await setup(t)
  const yaml = join(dir, 'train.yaml')
  writeFileSync(
    yaml,
    [
      `model_name_or_path: ${pro}`,
      'stage: pt',
      'do_train: true',
      'report_to: none',
      'finetuning_type: freeze',
      'use_llama_pro: true',
      'freeze_trainable_layers: 2',
      `dataset: ${data.pt}`,
      'cutoff_len: 48',
      'per_device_train_batch_size: 4',
      'learning_rate: 1.0e-3',
      'max_steps: 100',
      'logging_steps: 2',
      'output_dir: out',
    ].join('\n'),
  )
  const { stdout, stderr } = await run(process.execPath, [CLI, 'train', yaml, '--max_steps', '4', 'logging_steps=2'], {
    cwd: dir,
  })
  t.match(stdout, /training .* parameters \(layers 2, 5\) on \d+ sequences, 4 steps/)
  t.match(stdout, /step 2\/4 {2}loss \d/)
  t.match(stdout, /done: 4 steps/)
  t.match(stderr, /key "do_train" has no effect in llamapro/)
  t.ok(existsSync(join(dir, 'out', 'model.safetensors')), 'output_dir is relative to the working directory')
  const typo = await run(process.execPath, [CLI, 'train', yaml, '--learning-rat', '1e-4']).catch((e) => e)
  t.equal(typo.code, 1)
  t.match(typo.stderr, /unknown key "learning_rat" \(did you mean "learning_rate"\?\)/)
})

t.test('events arrive in order with typed payloads', async (t) => {
  const { dir, pro, data } = await setup(t)
  const events: TrainEvent['type'][] = []
  await train(
    config(dir, {
      model_name_or_path: pro,
      stage: 'pt',
      dataset: data.pt,
      output_dir: join(dir, 'out'),
      max_steps: 4,
      logging_steps: 2,
      save_steps: 2,
      val_size: 4,
      eval_steps: 4,
    }),
    {
      onEvent: (e) => events.push(e.type),
    },
  )
  t.same(events, ['data', 'start', 'step', 'step', 'log', 'checkpoint', 'step', 'step', 'log', 'eval', 'log', 'done'])
})
