/**
 * `llamapro bench <model> --nproc N`: data-parallel scaling on this machine. For each strategy the same train step
 * runs in one process and in N ranks (c10d, Gloo over 127.0.0.1), each rank with the per-device batch, so the
 * N-rank step trains N× the tokens. Reported: step times, global tokens/s, speed-up and efficiency against the
 * one-process run of the same invocation, and the gradient bytes each rank all-reduces per step — only the
 * trainable parameters travel, so LLaMA-Pro sends a fraction of what full fine-tuning sends.
 */
import { spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdir, writeFile } from 'node:fs/promises'
import { loadavg } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseModelConfig } from '../checkpoint/config.js'
import { openCheckpoint } from '../checkpoint/checkpoint.js'
import { rankEnvironment } from '../distributed/environment.js'
import { freePort } from '../distributed/launcher.js'
import { LlamaproError } from '../errors.js'
import { kernelOptionsEnv } from '../native/kernel-options.js'
import { formatBytes } from '../util/format.js'
import { type MachineInfo, describeMachine, machineInfo } from './machine.js'
import { PRESETS } from './presets.js'
import { type Percentiles, percentiles } from './run-bench.js'
import type { ScalingWorkerRequest, ScalingWorkerResult } from './scaling-worker.js'
import { parseStrategies } from './strategies.js'

export interface ScalingOptions {
  model: string
  strategies: string
  nproc: number
  batch?: number
  seq?: number
  steps?: number
  warmup?: number
  /** Intra-op threads of each process (default 1: N ranks on N cores). */
  threads?: number
  device?: string
  /** 1: also time the N ranks with ZeRO stage 1, beside the N ranks without it. */
  zeroStage?: 0 | 1
  onProgress?: (message: string) => void
}

export interface ScalingResult {
  strategy: string
  trainableParams: number
  totalParams: number
  single: { msPerStep: Percentiles; tokensPerSecond: number }
  ranks: { msPerStep: Percentiles; tokensPerSecond: number; allReduceMs: number }
  speedup: number
  efficiency: number
  /** Gradient bytes each rank sent into the all-reduce per step, and what full fine-tuning would send. */
  allReduceBytes: number
  fullFineTuneBytes: number
  /** AdamW state each rank holds without ZeRO. */
  optimizerBytes: number
  /** With --zero-stage 1: the same N ranks with ZeRO stage 1, and its step time as a ratio of theirs without it. */
  zero?: { msPerStep: Percentiles; optimizerBytesPerRank: number[]; stepTimeRatio: number }
}

export interface ScalingReport {
  machine: MachineInfo
  config: {
    model: string
    nproc: number
    batch: number
    seq: number
    steps: number
    warmup: number
    threads: number
    device: string
    backend: string
  }
  results: ScalingResult[]
  notes: string[]
}

function workerPath(): string {
  const here = fileURLToPath(import.meta.url)
  const js = here.replace(/scaling\.(ts|js)$/, 'scaling-worker.js')
  return existsSync(js) ? js : here.replace(/scaling\.(ts|js)$/, 'scaling-worker.ts')
}

function runWorkers(request: ScalingWorkerRequest, nproc: number, port: number): Promise<ScalingWorkerResult[]> {
  const script = workerPath()
  return Promise.all(
    Array.from({ length: nproc }, (_, rank) => {
      const env = { ...process.env, ...kernelOptionsEnv() }
      for (const key of ['RANK', 'WORLD_SIZE', 'LOCAL_RANK', 'LOCAL_WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT'])
        delete env[key]
      if (nproc > 1)
        Object.assign(
          env,
          rankEnvironment({
            rank,
            worldSize: nproc,
            localRank: rank,
            localWorldSize: nproc,
            masterAddr: '127.0.0.1',
            masterPort: port,
          }),
        )
      return new Promise<ScalingWorkerResult>((resolve, reject) => {
        const child = spawn(process.execPath, [...process.execArgv, script, JSON.stringify(request)], {
          env,
          stdio: ['ignore', 'pipe', 'pipe'],
        })
        let out = ''
        let err = ''
        child.stdout.on('data', (d) => (out += d))
        child.stderr.on('data', (d) => (err += d))
        child.on('exit', (code) => {
          if (code === 0) resolve(JSON.parse(out.trim().split('\n').pop()!) as ScalingWorkerResult)
          else
            reject(
              new LlamaproError(
                'LLAMAPRO_BENCH',
                `bench rank ${rank} of ${nproc} exited with status ${code}: ${err.trim().slice(-2000)}`,
              ),
            )
        })
      })
    }),
  )
}

export async function runScaling(options: ScalingOptions): Promise<ScalingReport> {
  const progress = options.onProgress ?? (() => {})
  const preset = PRESETS[options.model]
  let raw: Record<string, unknown>
  let dir: string | undefined
  if (preset) raw = preset.config
  else if (existsSync(options.model)) {
    const checkpoint = await openCheckpoint(options.model)
    raw = checkpoint.rawConfig
    dir = checkpoint.dir
  } else
    throw new LlamaproError(
      'LLAMAPRO_ARG',
      `"${options.model}" is neither a preset (${Object.keys(PRESETS).join(', ')}) nor a model folder`,
    )
  const config = parseModelConfig(raw, options.model)
  const device = options.device ?? 'cpu'
  const base = {
    raw,
    dir,
    numLayers: config.numLayers,
    vocabSize: config.vocabSize,
    batch: options.batch ?? preset?.batch ?? 4,
    seq: options.seq ?? preset?.seq ?? 128,
    steps: options.steps ?? 10,
    warmup: options.warmup ?? 3,
    threads: options.threads ?? 1,
    device,
    dtype: device === 'cpu' ? 'float32' : 'bfloat16',
  }
  const tokens = base.batch * base.seq
  const loadBefore = loadavg()[0]!
  const results: ScalingResult[] = []
  for (const strategy of parseStrategies(options.strategies, config.numLayers)) {
    const request: ScalingWorkerRequest = { ...base, strategy: strategy.name }
    progress(`${strategy.name}: one process`)
    const [single] = await runWorkers(request, 1, 0)
    progress(`${strategy.name}: ${options.nproc} ranks`)
    const ranks = await runWorkers(request, options.nproc, await freePort())
    // A data-parallel step ends when its slowest rank does: take the slowest rank's time step by step.
    const stepMs = ranks[0]!.ms.map((_, i) => Math.max(...ranks.map((r) => r.ms[i]!)))
    const singleMs = percentiles(single!.ms)
    const rankMs = percentiles(stepMs)
    let zero: ScalingResult['zero']
    if (options.zeroStage === 1) {
      progress(`${strategy.name}: ${options.nproc} ranks, ZeRO stage 1`)
      const zeroRanks = await runWorkers({ ...request, zeroStage: 1 }, options.nproc, await freePort())
      const zeroMs = percentiles(zeroRanks[0]!.ms.map((_, i) => Math.max(...zeroRanks.map((r) => r.ms[i]!))))
      zero = {
        msPerStep: zeroMs,
        optimizerBytesPerRank: zeroRanks.map((r) => r.optimizerBytes),
        stepTimeRatio: zeroMs.median / rankMs.median,
      }
    }
    const singleTps = tokens / (singleMs.median / 1000)
    const rankTps = (options.nproc * tokens) / (rankMs.median / 1000)
    results.push({
      strategy: strategy.name,
      trainableParams: single!.trainableParams,
      totalParams: single!.totalParams,
      single: { msPerStep: singleMs, tokensPerSecond: singleTps },
      ranks: { msPerStep: rankMs, tokensPerSecond: rankTps, allReduceMs: percentiles(ranks[0]!.reduceMs).median },
      speedup: rankTps / singleTps,
      efficiency: rankTps / singleTps / options.nproc,
      allReduceBytes: ranks[0]!.reducedBytes,
      fullFineTuneBytes: single!.totalParams * 4,
      optimizerBytes: ranks[0]!.optimizerBytes,
      ...(zero ? { zero } : {}),
    })
  }
  return {
    machine: machineInfo(),
    config: {
      model: options.model,
      nproc: options.nproc,
      batch: base.batch,
      seq: base.seq,
      steps: base.steps,
      warmup: base.warmup,
      threads: base.threads,
      device,
      backend: device === 'cpu' ? 'gloo' : 'nccl (gloo without it)',
    },
    results,
    notes: [
      `load average (1 min) ${loadBefore.toFixed(2)} before and ${loadavg()[0]!.toFixed(2)} after, on ` +
        `${machineInfo().cores} cores: other work on the machine takes CPU from the ranks, so speed-up is only ` +
        `meaningful on an otherwise idle machine with a core per rank`,
      'one process and N ranks run in the same invocation, each process with the given intra-op threads; the N-rank ' +
        "step time is the slowest rank's",
      'each rank trains the per-device batch, so N ranks train N× the tokens per step (tokens/s counts all ranks)',
      'all-reduce ms is the time rank 0 spent in the gradient all-reduce of a step, waiting for the slowest rank ' +
        'included',
      ...(options.zeroStage === 1
        ? [
            'ZeRO-1 rows: the same N ranks with zero_stage 1 (on Gloo the gradients are all-reduced, then the ' +
              'updated chunks all-gathered: one collective more per bucket than without ZeRO); the ratio is its ' +
              'median step time over theirs without ZeRO, measured in this run',
          ]
        : []),
    ],
  }
}

const ms = (v: number) => (v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2))

export function formatScaling(report: ScalingReport): string {
  const header = [
    'strategy',
    'trainable',
    '1 proc ms/step',
    `${report.config.nproc} ranks ms/step`,
    '1 proc tok/s',
    `${report.config.nproc} ranks tok/s`,
    'speed-up',
    'efficiency',
    'all-reduce/step',
    'full FT would send',
    'all-reduce ms',
  ]
  const rows = report.results.map((r) => [
    r.strategy,
    `${((100 * r.trainableParams) / r.totalParams).toFixed(1)}%`,
    ms(r.single.msPerStep.median),
    ms(r.ranks.msPerStep.median),
    r.single.tokensPerSecond.toFixed(0),
    r.ranks.tokensPerSecond.toFixed(0),
    `${r.speedup.toFixed(2)}x`,
    `${(100 * r.efficiency).toFixed(0)}%`,
    formatBytes(r.allReduceBytes),
    formatBytes(r.fullFineTuneBytes),
    ms(r.ranks.allReduceMs),
  ])
  const zeroRows = report.results.filter((r) => r.zero)
  const zeroTable = zeroRows.length
    ? [
        '',
        `ZeRO stage 1 on ${report.config.nproc} ranks (zero_stage: 1) beside the same ranks without it:`,
        ...zeroRows.map(
          (r) =>
            `  ${r.strategy}: ${ms(r.zero!.msPerStep.median)} ms/step vs ${ms(r.ranks.msPerStep.median)} (ratio ` +
            `${r.zero!.stepTimeRatio.toFixed(2)}); AdamW state per rank ` +
            `${r.zero!.optimizerBytesPerRank.map((b) => formatBytes(b)).join(' / ')} vs ` +
            `${formatBytes(r.optimizerBytes)}`,
        ),
      ]
    : []
  const all = [header, ...rows]
  const widths = header.map((_, c) => Math.max(...all.map((r) => r[c]!.length)))
  return [
    ...all.map((r) => r.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!))).join('  ')),
    ...zeroTable,
  ].join('\n')
}

export async function writeScalingReport(dir: string, report: ScalingReport, command: string): Promise<void> {
  await mkdir(dir, { recursive: true })
  await writeFile(join(dir, 'report.json'), `${JSON.stringify(report, null, 2)}\n`)
  const c = report.config
  const md = [
    `# Data-parallel scaling: ${c.model}, ${c.nproc} ranks`,
    '',
    `\`${command}\``,
    '',
    `Machine: ${describeMachine(report.machine)}.`,
    `Per-device batch ${c.batch} × ${c.seq} tokens, ${c.steps} timed steps after ${c.warmup} warm-up, ${c.threads} ` +
      `intra-op thread(s) per process, ${c.device}.`,
    '',
    '```',
    formatScaling(report),
    '```',
    '',
    ...report.notes.map((n) => `- ${n}`),
    '',
  ].join('\n')
  await writeFile(join(dir, 'report.md'), md)
}
