import { runBench } from '../bench/run-bench.js'
import { formatTable, findings, writeReport } from '../bench/report.js'
import { parseModelDtype } from '../checkpoint/dtypes.js'
import { UsageError } from '../errors.js'
import type { Device } from '../model/llama-model.js'
import { parseArgs, parseInteger } from './args.js'
import { mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import { writeFileAtomically } from '../util/atomic-dir.js'

export const BENCH_HELP = `llamapro bench <model_dir | tiny | small | 1b | 8b> [options]
llamapro bench <train.yaml> [--gradient-checkpointing on,off,all] [--steps S] [--warmup W] [--out DIR] [--json]

Times the real training step for several freeze strategies on one model (random weights for the presets), and
reports step time (median, p10, p90), tokens/s, trainable parameters, peak memory, analytic FLOPs per token,
achieved FLOP/s and, on a GPU, MFU. With --baseline python the same step runs in PyTorch eager in the same
invocation and each strategy gets the ratio llamapro / PyTorch.

  --strategies LIST   full,last:N,first:N,pro:N,modules:mlp,ids:a,b,... and lora:all, lora:pro:N (rank-8 adapters on
                      every linear layer, or on the N expanded blocks)  (default full,last:2,pro:2)
  --batch B --seq T   micro-batch (default: the preset's)
  --steps S           timed steps (default 10), after --warmup W (default 3)
  --threads K         LibTorch intra-op threads for llamapro and the baseline (default: LibTorch's)
  --device D          cpu (default), cuda, cuda:N
  --gradient-checkpointing on|off|on,off
                      activation checkpointing (default on); on,off times every strategy both ways, as
                      <strategy>/ckpt and <strategy>/no-ckpt (the Python baseline never checkpoints)
  --dtype D           float32 (CPU default) or bfloat16 (GPU default)
  --baseline python   also run bench/reference/bench_train_step.py with the first Python that has torch:
                      LLAMAPRO_PYTHON, else .venv/bin/python, /usr/bin/python3, python3 on PATH
  --paired            also time the strategies side by side, one step of each in turn (all models held at
                      once), and compare LLaMA-Pro with full fine-tuning on those paired steps
  --goal R            state in the report whether each ratio is <= R
  --out DIR           write report.json, report.md and charts (PNG and SVG) there
  --json              print the report as JSON
  --nproc N           data-parallel scaling instead: each strategy in 1 process and in N ranks (c10d over
                      127.0.0.1, --threads per process, default 1), speed-up, efficiency and the gradient bytes
                      all-reduced per step beside full fine-tuning's
  --zero-stage 1      with --nproc: also the N ranks with ZeRO stage 1 (AdamW state sharded), beside them
                      without it: step-time ratio and AdamW bytes per rank

With a training YAML: times the step \`llamapro train\` runs on it (its data, template, padding, batches in order,
freeze policy, dtype, optimizer options), one copy of the model per checkpointing setting, the settings taking
turns step by step. --gradient-checkpointing takes on (the layers that train are recomputed, the default), off,
all (frozen layers too), comma-separated (default on,off); --steps (default: the run's, at most 12) after
--warmup (default 1). Nothing is written to the YAML's output_dir. The losses are those train logs.`

function zeroStageFlag(value: string | undefined): 0 | 1 {
  if (value === undefined || value === '0') return 0
  if (value === '1') return 1
  throw new UsageError(`--zero-stage must be 0 or 1 (ZeRO stage 1 shards AdamW's state), got ${JSON.stringify(value)}`)
}

async function runScalingCommand(
  argv: string[],
  positionals: string[],
  values: Record<string, string | boolean | undefined>,
  nproc: number,
): Promise<number> {
  if (positionals.length !== 1) throw new UsageError('expected one model folder or preset (tiny, small, 1b, 8b)')
  const { runScaling, formatScaling, writeScalingReport } = await import('../bench/scaling.js')
  const report = await runScaling({
    model: positionals[0]!,
    strategies: values.strategies as string,
    nproc,
    batch: parseInteger(values.batch as string | undefined, '--batch', { min: 1 }),
    seq: parseInteger(values.seq as string | undefined, '--seq', { min: 2 }),
    steps: parseInteger(values.steps as string | undefined, '--steps', { min: 1 }),
    warmup: parseInteger(values.warmup as string | undefined, '--warmup', { min: 0 }),
    threads: parseInteger(values.threads as string | undefined, '--threads', { min: 1 }),
    device: values.device as string | undefined,
    zeroStage: zeroStageFlag(values['zero-stage'] as string | undefined),
    onProgress: values.json ? undefined : (m) => console.error(`bench: ${m}`),
  })
  if (values.out) await writeScalingReport(values.out as string, report, `llamapro bench ${argv.join(' ')}`)
  if (values.json) console.log(JSON.stringify(report, null, 2))
  else {
    console.log(formatScaling(report))
    if (values.out) console.log(`report: ${values.out}/report.md`)
  }
  return 0
}

async function runTrainConfigCommand(
  argv: string[],
  yaml: string,
  values: Record<string, string | boolean | undefined>,
): Promise<number> {
  const fromYaml = [
    'strategies',
    'batch',
    'seq',
    'threads',
    'device',
    'dtype',
    'baseline',
    'paired',
    'goal',
    'nproc',
    'zero-stage',
  ]
  // --strategies has a default; the others are set only when given.
  for (const flag of fromYaml) {
    if (
      values[flag] !== undefined &&
      !(flag === 'strategies' && !argv.some((a) => a === '--strategies' || a.startsWith('--strategies=')))
    ) {
      throw new UsageError(
        `--${flag} does not apply to a training YAML: the bench takes it from ${yaml} (change it there or give a ` +
          `model folder)`,
      )
    }
  }
  const text = argv.some((a) => a === '--gradient-checkpointing' || a.startsWith('--gradient-checkpointing='))
    ? (values['gradient-checkpointing'] as string)
    : 'on,off'
  const modes = text.split(',').map((v) => v.trim())
  const { CHECKPOINTING_MODES, benchTrainConfig, formatTrainConfigBench } = await import(
    '../bench/train-config-bench.js'
  )
  if (
    modes.some((m) => !(CHECKPOINTING_MODES as readonly string[]).includes(m)) ||
    new Set(modes).size !== modes.length
  ) {
    throw new UsageError(
      `--gradient-checkpointing with a YAML takes distinct values among on, off, all (comma-separated), got ` +
        `${JSON.stringify(text)}`,
    )
  }
  const report = await benchTrainConfig({
    config: yaml,
    checkpointing: modes as ('on' | 'off' | 'all')[],
    steps: parseInteger(values.steps as string | undefined, '--steps', { min: 1 }),
    warmup: parseInteger(values.warmup as string | undefined, '--warmup', { min: 0 }),
    onProgress: values.json ? undefined : (m) => console.error(`bench: ${m}`),
  })
  const formatted = formatTrainConfigBench(report)
  if (values.out) {
    const dir = values.out as string
    await mkdir(dir, { recursive: true })
    await writeFileAtomically(
      join(dir, 'report.json'),
      `${JSON.stringify({ command: `llamapro bench ${argv.join(' ')}`, ...report }, null, 2)}\n`,
    )
    await writeFileAtomically(
      join(dir, 'report.md'),
      `# llamapro bench on a training YAML\n\nCommand: \`llamapro bench ${argv.join(' ')}\`\n\n${formatted}\n`,
    )
  }
  if (values.json) console.log(JSON.stringify(report, null, 2))
  else {
    console.log(formatted)
    if (values.out) console.log(`report: ${values.out}/report.md`)
  }
  return 0
}

export async function runBenchCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    strict: true,
    options: {
      strategies: { type: 'string', default: 'full,last:2,pro:2' },
      batch: { type: 'string' },
      seq: { type: 'string' },
      steps: { type: 'string' },
      warmup: { type: 'string' },
      threads: { type: 'string' },
      device: { type: 'string' },
      'gradient-checkpointing': { type: 'string', default: 'on' },
      dtype: { type: 'string' },
      baseline: { type: 'string' },
      paired: { type: 'boolean' },
      goal: { type: 'string' },
      out: { type: 'string' },
      json: { type: 'boolean', default: false },
      nproc: { type: 'string' },
      'zero-stage': { type: 'string' },
    },
  })
  if (positionals.length === 1 && /\.ya?ml$/i.test(positionals[0]!))
    return runTrainConfigCommand(argv, positionals[0]!, values)
  const nproc = parseInteger(values.nproc, '--nproc', { min: 2 })
  if (nproc !== undefined) return runScalingCommand(argv, positionals, values, nproc)
  if (values['zero-stage'] !== undefined)
    throw new UsageError('--zero-stage needs --nproc N (ZeRO stage 1 shards the optimizer state over the ranks)')
  if (positionals.length !== 1) throw new UsageError('expected one model folder or preset (tiny, small, 1b, 8b)')
  if (values.baseline !== undefined && values.baseline !== 'python')
    throw new UsageError(`--baseline must be python, got ${JSON.stringify(values.baseline)}`)
  const dtype = values.dtype === undefined ? undefined : parseModelDtype(values.dtype)
  if (values.dtype !== undefined && !dtype)
    throw new UsageError(`--dtype must be float32, bfloat16 or float16, got ${JSON.stringify(values.dtype)}`)
  const checkpointing = values['gradient-checkpointing']!.split(',').map((v) => v.trim())
  if (
    checkpointing.length === 0 ||
    checkpointing.some((v) => v !== 'on' && v !== 'off') ||
    new Set(checkpointing).size !== checkpointing.length
  ) {
    throw new UsageError(
      `--gradient-checkpointing must be on, off or on,off, got ${JSON.stringify(values['gradient-checkpointing'])}`,
    )
  }
  const report = await runBench({
    model: positionals[0]!,
    strategies: values.strategies!,
    batch: parseInteger(values.batch, '--batch', { min: 1 }),
    seq: parseInteger(values.seq, '--seq', { min: 2 }),
    steps: parseInteger(values.steps, '--steps', { min: 1 }),
    warmup: parseInteger(values.warmup, '--warmup', { min: 0 }),
    threads: parseInteger(values.threads, '--threads', { min: 0 }),
    device: values.device as Device | undefined,
    dtype,
    baseline: values.baseline === 'python' ? 'python' : null,
    paired: values.paired ?? false,
    gradientCheckpointing: checkpointing.map((v) => v === 'on'),
    onProgress: values.json ? undefined : (m) => console.error(`bench: ${m}`),
  })
  const command = `llamapro bench ${argv.join(' ')}`
  const goal = values.goal === undefined ? undefined : Number(values.goal)
  if (values.out) await writeReport(values.out, report, command, goal)
  if (values.json) {
    console.log(JSON.stringify(report, null, 2))
  } else {
    console.log(formatTable(report))
    for (const line of findings(report)) console.log(`- ${line}`)
    if (values.out) console.log(`report: ${values.out}/report.md`)
  }
  return 0
}
