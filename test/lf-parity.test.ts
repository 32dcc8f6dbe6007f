/**
 * LLaMA-Factory parity for users' own YAMLs and folders: cwd-relative paths, the examples/ YAML, negative flag
 * values, the default device, stale temporary folders of killed runs, and which Python `bench --baseline` uses.
 */
import t from 'tap'
import { execFile, spawnSync } from 'node:child_process'
import { chmodSync, cpSync, existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { promisify } from 'node:util'
import { joinNegativeValues } from '../lib/cli/args.js'
import { findTorchPython, pythonCandidates } from '../lib/bench/python.js'
import { loadExamples } from '../lib/data/dataset.js'
import { expandCheckpoint } from '../lib/expand/expand-checkpoint.js'
import { LlamaModel } from '../lib/index.js'
import { loadTrainConfig } from '../lib/train/config.js'
import { chooseDevice } from '../lib/train/device.js'
import type { TrainEvent } from '../lib/train/events.js'
import { train } from '../lib/train/trainer.js'
import { isProcessAlive, removeStaleTemporaries } from '../lib/util/atomic-dir.js'
import { REPO_ROOT } from './helpers/python.js'
import { writeTrainableModel } from './helpers/trainable-model.js'
import { corpusB } from '../lib/demo/corpora.js'
import { pinBlasKernels } from '../lib/demo/kernels.js'

const CLI = join(REPO_ROOT, 'dist', 'cli', 'main.js')
const run = promisify(execFile)

/** The pid of a process that has ended (and so is gone: its parent reaped it). */
function deadPid(): number {
  const child = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' })
  const pid = Number(child.stdout)
  if (isProcessAlive(pid)) throw new Error(`pid ${pid} was reused at once; run again`)
  return pid
}

/** A LLaMA-Factory-style working folder: models/base (8 layers), data/dataset_info.json with an alpaca set. */
async function layOutWorkingDir(dir: string, examples = 16): Promise<void> {
  await writeTrainableModel(join(dir, 'models', 'base'), { layers: 8, seed: 5 })
  mkdirSync(join(dir, 'data'), { recursive: true })
  const records = corpusB(examples, 21).map((code) => {
    const [signature, body, check] = code.split('\n')
    return { instruction: 'Complete the function.', input: signature, output: `${body}\n${check}` }
  })
  writeFileSync(join(dir, 'data', 'alpaca_demo.json'), JSON.stringify(records, null, 2))
  writeFileSync(
    join(dir, 'data', 'code.jsonl'),
    `${corpusB(40, 22)
      .map((text) => JSON.stringify({ text }))
      .join('\n')}\n`,
  )
  writeFileSync(
    join(dir, 'data', 'dataset_info.json'),
    JSON.stringify(
      {
        alpaca_demo: { file_name: 'alpaca_demo.json' },
        code_demo: { file_name: 'code.jsonl', columns: { prompt: 'text' } },
      },
      null,
      2,
    ),
  )
}

t.test('every path key of a train YAML resolves against the working directory, as in LLaMA-Factory', async (t) => {
  const dir = t.testdir({
    configs: {
      'run.yaml':
        'model_name_or_path: models/m\ndataset: d.jsonl\noutput_dir: saves/run\nresume_from_checkpoint: ' +
        'saves/run/checkpoint-4\n',
    },
  })
  const cwd = join(dir, 'work')
  const config = await loadTrainConfig(join(dir, 'configs', 'run.yaml'), {}, { cwd })
  t.equal(config.modelNameOrPath, join(cwd, 'models', 'm'))
  t.equal(config.datasetDir, join(cwd, 'data'), 'dataset_dir defaults to data, under the working directory')
  t.equal(config.outputDir, join(cwd, 'saves', 'run'))
  t.equal(config.resumeFromCheckpoint, join(cwd, 'saves', 'run', 'checkpoint-4'))
  const dirOverride = await loadTrainConfig(join(dir, 'configs', 'run.yaml'), { dataset_dir: 'mydata' }, { cwd })
  t.equal(dirOverride.datasetDir, join(cwd, 'mydata'))
  const absolute = await loadTrainConfig(join(dir, 'configs', 'run.yaml'), { output_dir: '/abs/out' }, { cwd })
  t.equal(absolute.outputDir, '/abs/out', 'absolute paths stay as they are')
  const defaultCwd = await loadTrainConfig(join(dir, 'configs', 'run.yaml'))
  t.equal(defaultCwd.modelNameOrPath, resolve(process.cwd(), 'models', 'm'), 'without options: process.cwd()')

  // Dataset files: relative to the working directory first, then to dataset_dir; names via dataset_info.json.
  mkdirSync(join(cwd, 'data'), { recursive: true })
  mkdirSync(join(cwd, 'corpora'), { recursive: true })
  writeFileSync(join(cwd, 'corpora', 'a.jsonl'), '{"text": "from the working directory"}\n')
  writeFileSync(join(cwd, 'data', 'b.jsonl'), '{"text": "from dataset_dir"}\n')
  writeFileSync(join(cwd, 'data', 'dataset_info.json'), '{"named": {"file_name": "b.jsonl"}}')
  const examples = await loadExamples({
    names: ['corpora/a.jsonl', 'b.jsonl', 'named'],
    stage: 'pt',
    datasetDir: join(cwd, 'data'),
    baseDir: cwd,
  })
  t.same(
    examples.map((e) => (e.kind === 'text' ? e.text : '')),
    ['from the working directory', 'from dataset_dir', 'from dataset_dir'],
  )
})

t.test(
  'alpaca records named in dataset_info.json read system and history only where columns map them, as LLaMA-Factory',
  async (t) => {
    const dir = t.testdir({
      'rec.json': JSON.stringify([{ instruction: 'Q', input: '', output: 'A', system: 'S', history: [['q0', 'a0']] }]),
      'dataset_info.json': JSON.stringify({
        plain: { file_name: 'rec.json' },
        mapped: {
          file_name: 'rec.json',
          columns: { prompt: 'instruction', query: 'input', response: 'output', system: 'system', history: 'history' },
        },
      }),
    })
    const load = async (name: string) =>
      (await loadExamples({ names: [name], stage: 'sft', datasetDir: dir, baseDir: dir }))[0]
    t.same(
      await load('plain'),
      {
        kind: 'conversation',
        messages: [
          { role: 'user', content: 'Q' },
          { role: 'assistant', content: 'A' },
        ],
      },
      'LLaMA-Factory ignores unmapped system/history',
    )
    const full = [
      { role: 'system', content: 'S' },
      { role: 'user', content: 'q0' },
      { role: 'assistant', content: 'a0' },
      { role: 'user', content: 'Q' },
      { role: 'assistant', content: 'A' },
    ]
    t.same(await load('mapped'), { kind: 'conversation', messages: full })
    t.same(
      await load('rec.json'),
      { kind: 'conversation', messages: full },
      'a file named by path reads them (llamapro)',
    )
  },
)

t.test(
  'examples/llama_pro/freeze_sft.yaml trains from a LLaMA-Factory-style working folder (CLI and train(path))',
  async (t) => {
    const dir = t.testdir()
    await layOutWorkingDir(dir)
    await expandCheckpoint(join(dir, 'models', 'base'), join(dir, 'models', 'base-pro'), { numExpand: 8 })
    cpSync(join(REPO_ROOT, 'examples'), join(dir, 'examples'), { recursive: true })
    const yaml = 'examples/llama_pro/freeze_sft.yaml'

    const { stdout, stderr } = await run(process.execPath, [CLI, 'train', yaml], { cwd: dir })
    t.match(
      stdout,
      /training .* parameters \(layers 1, 3, 5, 7, 9, 11, 13, 15\) on 16 sequences, 6 steps; device cpu \(/,
      '8 expanded blocks of 16 layers; 16 examples, batch 1 x 8, 3 epochs',
    )
    t.match(stdout, /done: 6 steps/)
    t.match(stderr, /key "trust_remote_code" has no effect/)
    const out = join(dir, 'saves', 'base-pro', 'freeze', 'sft')
    for (const file of [
      'model.safetensors',
      'config.json',
      'trainer_log.jsonl',
      'training_loss.svg',
      'all_results.json',
    ])
      t.ok(existsSync(join(out, file)), `saves/base-pro/freeze/sft/${file}`)
    t.notOk(existsSync(join(dir, 'examples', 'llama_pro', 'saves')), 'nothing is written beside the YAML')

    // The API: train(path) resolves against process.cwd() too, or against the cwd option.
    const events: TrainEvent[] = []
    const api = await train(join(dir, yaml), {
      cwd: dir,
      overrides: { output_dir: 'saves/api', num_train_epochs: 1 },
      onEvent: (e) => events.push(e),
    })
    t.equal(api.outputDir, join(dir, 'saves', 'api'))
    t.equal(api.globalStep, 2)
    const start = events.find((e) => e.type === 'start')
    t.equal(start?.type === 'start' && start.device, 'cpu')
    const previous = process.cwd()
    process.chdir(dir)
    try {
      const fromCwd = await train(yaml, { overrides: { output_dir: 'saves/cwd', max_steps: 1 } })
      t.equal(fromCwd.outputDir, join(dir, 'saves', 'cwd'))
    } finally {
      process.chdir(previous)
    }
  },
)

t.test('numeric flags take negative values: --freeze-trainable-layers -2 means the first 2 layers', async (t) => {
  const options = { 'freeze-trainable-layers': { type: 'string' as const }, json: { type: 'boolean' as const } }
  t.same(joinNegativeValues(['m', '--freeze-trainable-layers', '-2', '--json'], options), [
    'm',
    '--freeze-trainable-layers=-2',
    '--json',
  ])
  t.same(joinNegativeValues(['--freeze-trainable-layers', '-1.5e-3'], options), ['--freeze-trainable-layers=-1.5e-3'])
  t.same(
    joinNegativeValues(['--freeze-trainable-layers', '--json'], options),
    ['--freeze-trainable-layers', '--json'],
    'a missing value is still reported by parseArgs',
  )
  t.same(joinNegativeValues(['--json', '-2'], options), ['--json', '-2'], 'boolean flags take no value')
  t.same(joinNegativeValues(['--', '--freeze-trainable-layers', '-2'], options), [
    '--',
    '--freeze-trainable-layers',
    '-2',
  ])

  const dir = t.testdir()
  await writeTrainableModel(join(dir, 'm'), { layers: 4 })
  const out = JSON.parse(
    (await run(process.execPath, [CLI, 'plan', join(dir, 'm'), '--freeze-trainable-layers', '-2', '--json'])).stdout,
  )
  t.same(out.trainableLayerIds, [0, 1])
  const bad = await run(process.execPath, [CLI, 'plan', join(dir, 'm'), '--freeze-trainable-layers', '-x']).catch(
    (e) => e,
  )
  t.equal(bad.code, 2, 'not a number: still a usage error')
})

t.test('device: auto picks the first visible CUDA device when LibTorch has CUDA, else the CPU', async (t) => {
  const gpus = (indices: number[]) => indices.map((index) => ({ index }))
  t.same(chooseDevice('auto', { compiled: true, available: true, devices: gpus([0, 1]) }), {
    device: 'cuda:0',
    reason: 'first visible CUDA device',
  })
  t.equal(chooseDevice('auto', { compiled: true, available: true, devices: gpus([2, 3]) }).device, 'cuda:2')
  t.same(chooseDevice('auto', { compiled: true, available: false, devices: [] }), {
    device: 'cpu',
    reason: 'LibTorch has CUDA but no GPU is visible',
  })
  t.same(chooseDevice('auto', { compiled: false, available: false, devices: [] }), {
    device: 'cpu',
    reason: 'LibTorch without CUDA',
  })
  t.same(chooseDevice('auto', null), { device: 'cpu', reason: 'LibTorch without CUDA' })
  t.equal(
    chooseDevice('cpu', { compiled: true, available: true, devices: gpus([0]) }).device,
    'cpu',
    'an explicit device is kept',
  )
  t.equal(chooseDevice('cuda:1', null).device, 'cuda:1')
  t.throws(() => chooseDevice('gpu', null), {
    code: 'LLAMAPRO_TRAIN_CONFIG',
    message: /device must be auto, cpu, cuda or cuda:<n>, got "gpu"/,
  })
})

t.test(
  'stale temporary folders of killed runs are removed (and reported) by expand, save, train and the demo',
  async (t) => {
    const dir = t.testdir()
    const dead = deadPid()
    const stale = (parent: string, name: string) => {
      const path = join(parent, name)
      mkdirSync(path, { recursive: true })
      writeFileSync(join(path, 'model-00001-of-00002.safetensors'), 'half written')
      return path
    }
    await writeTrainableModel(join(dir, 'base'), { layers: 4 })

    // removeStaleTemporaries on its own: only dead processes' folders, only of the target when one is named.
    const parent = join(dir, 'p')
    const deadOut = stale(parent, `.out.tmp-${dead}-m1x2-abc123`)
    const deadOld = stale(parent, `.out.old-${dead}-m1x2-abc123`)
    const live = stale(parent, `.out.tmp-${process.pid}-m1x2-abc123`)
    const other = stale(parent, `.other.tmp-${dead}-m1x2-abc123`)
    const lookalike = stale(parent, '.out.tmp-notapid')
    t.same((await removeStaleTemporaries(parent, { target: 'out' })).sort(), [deadOld, deadOut].sort())
    t.ok(existsSync(live), "a live process's temporary is kept")
    t.ok(existsSync(other), 'another target is kept')
    t.ok(existsSync(lookalike), 'names that are not ours are kept')

    // expand
    const expandStale = stale(dir, `.pro.tmp-${dead}-m1x2-abc123`)
    const warnings: string[] = []
    await expandCheckpoint(join(dir, 'base'), join(dir, 'pro'), { numExpand: 2, onWarning: (m) => warnings.push(m) })
    t.notOk(existsSync(expandStale))
    t.match(warnings.join('\n'), /removed 1 stale temporary folder left by ended processes: .*\.pro\.tmp-/)
    const cli = stale(dir, `.pro2.tmp-${dead}-m1x2-abc123`)
    const { stderr } = await run(process.execPath, [
      CLI,
      'expand',
      join(dir, 'base'),
      join(dir, 'pro2'),
      '--num-expand',
      '2',
    ])
    t.notOk(existsSync(cli))
    t.match(stderr, /warning: removed 1 stale temporary folder left by ended processes/)

    // model.save
    const saveStale = stale(dir, `.saved.tmp-${dead}-m1x2-abc123`)
    const model = await LlamaModel.load(join(dir, 'base'))
    const saveWarnings: string[] = []
    await model.save(join(dir, 'saved'), { onWarning: (m) => saveWarnings.push(m) })
    model.dispose()
    t.notOk(existsSync(saveStale))
    t.equal(saveWarnings.length, 1)

    // train: a killed run's half-written checkpoint and final-model staging folder in output_dir
    const output = join(dir, 'run')
    const ckptStale = stale(output, `.checkpoint-2.tmp-${dead}-m1x2-abc123`)
    const finalStale = stale(output, `.final-${dead}-m1x2`)
    writeFileSync(
      join(dir, 'text.jsonl'),
      `${corpusB(20, 3)
        .map((text) => JSON.stringify({ text }))
        .join('\n')}\n`,
    )
    const trainWarnings: string[] = []
    writeFileSync(
      join(dir, 'run.yaml'),
      `model_name_or_path: base\nstage: pt\ndataset: text.jsonl\ncutoff_len: 32\noutput_dir: run\nmax_steps: ` +
        `2\nsave_steps: 1\nper_device_train_batch_size: 2\n`,
    )
    await train(join(dir, 'run.yaml'), {
      cwd: dir,
      onEvent: (e) => e.type === 'warning' && trainWarnings.push(e.message),
    })
    t.notOk(existsSync(ckptStale))
    t.notOk(existsSync(finalStale))
    t.match(trainWarnings.join('\n'), /removed 2 stale temporary folders left by ended processes/)
    t.ok(existsSync(join(output, 'checkpoint-1', 'trainer_state.json')), 'the run then wrote its own checkpoint')
    t.same(
      readdirSync(output).filter((name) => name.startsWith('.')),
      [],
      'and left no temporary of its own',
    )
  },
)

t.test('llamapro demo with a relative --out, from another working directory, cleaning a killed demo', async (t) => {
  const dir = t.testdir()
  const dead = deadPid()
  mkdirSync(join(dir, 'runs', 'demo', `.init.tmp-${dead}-m1x2-abc123`), { recursive: true })
  mkdirSync(join(dir, 'runs', `.demo.tmp-${dead}-m1x2-abc123`), { recursive: true })
  const { stdout } = await run(
    process.execPath,
    [CLI, 'demo', '--out', 'runs/demo', '--steps', '2', '--pre-train-steps', '2'],
    { cwd: dir },
  )
  t.match(stdout, /removed 2 stale temporary folders left by ended processes/)
  t.match(stdout, /verify: identity blocks, logits identical/)
  t.match(stdout, /plots: runs\/demo\/demo\.svg/)
  t.ok(existsSync(join(dir, 'runs', 'demo', 'demo.json')))
  t.notOk(existsSync(join(dir, 'runs', 'demo', 'runs')), 'the relative folder is not joined twice')
})

t.test(
  'the demo pins OpenBLAS kernels and threads, and the products on OpenBLAS, unless the user chose them',
  async (t) => {
    const avx2 = new Set(['sse2', 'avx2', 'fma'])
    const env: NodeJS.ProcessEnv = { OMP_NUM_THREADS: '1' }
    t.same(pinBlasKernels(env, 'x64', avx2), {
      set: ['OPENBLAS_NUM_THREADS=2', 'OPENBLAS_CORETYPE=Haswell', 'LLAMAPRO_GEMM=blas'],
      reason: 'the same sums on every x86-64 CPU with AVX2',
      kernels: { gemm: 'blas' },
    })
    t.same(
      env,
      { OMP_NUM_THREADS: '1', OPENBLAS_NUM_THREADS: '2', OPENBLAS_CORETYPE: 'Haswell' },
      'the GEMM choice is a kernel option, not written to the environment',
    )
    const own: NodeJS.ProcessEnv = { OPENBLAS_CORETYPE: 'Zen', OPENBLAS_NUM_THREADS: '4', LLAMAPRO_GEMM: 'onednn' }
    t.same(pinBlasKernels(own, 'x64', avx2), {
      set: [],
      reason:
        'kept OPENBLAS_NUM_THREADS=4, OPENBLAS_CORETYPE=Zen, LLAMAPRO_GEMM=onednn: the numbers may differ from ' +
        "docs/cli/demo.md's",
      kernels: {},
    })
    t.same(
      own,
      { OPENBLAS_CORETYPE: 'Zen', OPENBLAS_NUM_THREADS: '4', LLAMAPRO_GEMM: 'onednn' },
      "the user's settings are kept",
    )
    const arm: NodeJS.ProcessEnv = {}
    t.match(pinBlasKernels(arm, 'arm64', new Set()).reason, /kept OpenBLAS kernels for this CPU/)
    t.equal(arm.OPENBLAS_CORETYPE, undefined, 'no x86 kernel forced on another CPU')
    t.notOk(
      pinBlasKernels({}, 'x64', new Set(['sse2'])).set.includes('OPENBLAS_CORETYPE=Haswell'),
      'nor on an x86 CPU without AVX2',
    )
  },
)

t.test(
  'bench --baseline python: the first interpreter with torch; none: what was tried and how to choose',
  async (t) => {
    const root = '/pkg'
    t.same(
      pythonCandidates({ env: {}, packageRoot: root }).map((c) => c.path),
      ['/pkg/.venv/bin/python', '/usr/bin/python3', 'python3'],
    )
    t.same(pythonCandidates({ env: { LLAMAPRO_PYTHON: '/my/python' }, packageRoot: root }), [
      { path: '/my/python', source: 'LLAMAPRO_PYTHON' },
    ])
    t.same(
      pythonCandidates({ explicit: '/x/python', env: { LLAMAPRO_PYTHON: '/my/python' }, packageRoot: root }).map(
        (c) => c.path,
      ),
      ['/x/python'],
    )

    const dir = t.testdir()
    const script = (name: string, body: string) => {
      const path = join(dir, name)
      writeFileSync(path, `#!/bin/sh\n${body}\n`)
      chmodSync(path, 0o755)
      return path
    }
    const noTorch = script('no-torch', `echo "ModuleNotFoundError: No module named 'torch'" >&2; exit 1`)
    const withTorch = script('with-torch', 'echo 9.9.0')
    const found = await findTorchPython({ env: { LLAMAPRO_PYTHON: withTorch }, packageRoot: dir })
    t.same(found, { path: withTorch, source: 'LLAMAPRO_PYTHON', torchVersion: '9.9.0' })
    await t.rejects(findTorchPython({ env: { LLAMAPRO_PYTHON: noTorch }, packageRoot: dir }), {
      code: 'LLAMAPRO_PYTHON',
      message: new RegExp(
        `tried:\\n  ${noTorch} \\(LLAMAPRO_PYTHON\\): ModuleNotFoundError: No module named 'torch'\\nChoose one with ` +
          `LLAMAPRO_PYTHON=`,
      ),
    })
    const missing = await run(process.execPath, [CLI, 'bench', 'tiny', '--baseline', 'python', '--steps', '1'], {
      env: { ...process.env, LLAMAPRO_PYTHON: join(dir, 'nope') },
    }).catch((e) => e)
    t.equal(missing.code, 1)
    t.match(
      missing.stderr,
      /needs a Python interpreter that can import torch; tried:\n {2}.*nope \(LLAMAPRO_PYTHON\): not found/,
    )
    t.notMatch(missing.stderr, /Traceback/)
  },
)
