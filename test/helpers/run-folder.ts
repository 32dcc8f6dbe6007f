/**
 * A training output folder as the run-folder contract describes it (trainer_log.jsonl with LLaMA-Factory's fields
 * and llamapro's, llamapro_run.json, training_args.yaml, running_log.txt), for the board's tests. The records'
 * numbers follow a plausible run: a decaying loss, a warm-up then cosine lr, two eval datasets every `evalEvery`.
 */
import { mkdirSync, writeFileSync } from 'node:fs'
import { hostname } from 'node:os'
import { join } from 'node:path'

export interface SyntheticRunOptions {
  steps: number
  totalSteps?: number
  evalEvery?: number
  layers?: number[]
  expanded?: number[]
  evalDatasets?: string[]
  /** Write llamapro_run.json, training_args.yaml and running_log.txt (the new files); default true. */
  newFiles?: boolean
  pid?: number
}

const hms = (seconds: number) => {
  const s = Math.round(seconds)
  const two = (n: number) => String(n).padStart(2, '0')
  return `${Math.floor(s / 3600)}:${two(Math.floor((s % 3600) / 60))}:${two(s % 60)}`
}

export function syntheticRecord(step: number, total: number, o: { layers?: number[]; expanded?: number[] } = {}) {
  const layers = o.layers ?? [0, 1, 2, 3, 4, 5]
  const seconds = step * 0.25
  const warmup = total / 20
  const lr = step < warmup ? (2e-4 * step) / warmup : 1e-4 * (1 + Math.cos((Math.PI * step) / total))
  const decay = Math.exp(-step / total)
  const layerNorm = (l: number) => Number((((o.expanded ?? []).includes(l) ? 0.9 : 0.3) * decay + 0.01 * l).toFixed(6))
  return {
    current_steps: step,
    total_steps: total,
    loss: Number((2.2 * Math.exp(-step / (total / 3)) + 0.6 + 0.05 * Math.sin(step * 1.7)).toFixed(6)),
    lr: Number(lr.toExponential(6)),
    epoch: Number((step / 500).toFixed(4)),
    percentage: Number(((100 * step) / total).toFixed(2)),
    elapsed_time: hms(seconds),
    remaining_time: hms(((total - step) * seconds) / step),
    grad_norm: Number((1.5 * Math.exp(-step / total) + 0.2 * Math.abs(Math.sin(step))).toFixed(6)),
    tokens_per_second: Number((4000 + 300 * Math.sin(step / 7)).toFixed(1)),
    elapsed_seconds: seconds,
    layer_grad_norms: Object.fromEntries(layers.map((l) => [String(l), layerNorm(l)])),
  }
}

export function syntheticEval(step: number, total: number, datasets: string[]): Record<string, unknown> {
  const base = {
    current_steps: step,
    total_steps: total,
    epoch: step / 500,
    percentage: (100 * step) / total,
    elapsed_time: hms(step * 0.25),
    remaining_time: hms((total - step) * 0.25),
    elapsed_seconds: step * 0.25,
  }
  // The first dataset is the one learned (its loss falls), the others are kept (theirs creeps up).
  const loss = (i: number) =>
    Number((i === 0 ? 2.4 * Math.exp(-step / total) + 0.9 : 1.1 + 0.1 * (step / total)).toFixed(6))
  const keys = datasets.length
    ? datasets.map((d, i) => [`eval_${d}_loss`, loss(i)])
    : [['eval_loss', Number((2 * Math.exp(-step / total) + 0.8).toFixed(6))]]
  return { ...base, ...Object.fromEntries(keys) }
}

/** The log's lines, as text: training lines every step, eval lines every evalEvery steps. */
export function syntheticLog(o: SyntheticRunOptions): string {
  const total = o.totalSteps ?? o.steps
  const lines: string[] = []
  for (let step = 1; step <= o.steps; step++) {
    lines.push(JSON.stringify(syntheticRecord(step, total, o)))
    if (o.evalEvery && step % o.evalEvery === 0) {
      lines.push(JSON.stringify(syntheticEval(step, total, o.evalDatasets ?? [])))
    }
  }
  return `${lines.join('\n')}\n`
}

export function writeSyntheticRun(dir: string, o: SyntheticRunOptions): void {
  mkdirSync(dir, { recursive: true })
  const total = o.totalSteps ?? o.steps
  writeFileSync(join(dir, 'trainer_log.jsonl'), syntheticLog(o))
  if (o.newFiles === false) return
  const layers = o.layers ?? [0, 1, 2, 3, 4, 5]
  writeFileSync(
    join(dir, 'llamapro_run.json'),
    JSON.stringify({
      created_by: 'llamapro 0.1.0',
      started_at: new Date().toISOString(),
      hostname: hostname(),
      pid: o.pid ?? process.pid,
      stage: 'pt',
      finetuning_type: 'freeze',
      model_name_or_path: 'models/tiny-pro',
      output_dir: dir,
      total_steps: total,
      num_layers: 8,
      trainable_layer_ids: layers,
      expanded_layer_ids: o.expanded ?? [],
      eval_datasets: o.evalDatasets ?? [],
      world_size: 1,
      device: 'cpu',
      logging_dir: null,
    }),
  )
  const args = ['model_name_or_path: models/tiny-pro', 'stage: pt', 'finetuning_type: freeze', 'use_llama_pro: true']
  writeFileSync(join(dir, 'training_args.yaml'), [...args, `max_steps: ${total}`, 'logging_steps: 1', ''].join('\n'))
  const logLines = Array.from({ length: o.steps }, (_, i) => `[INFO|trainer] {'loss': 1.0, 'step': ${i + 1}}`)
  writeFileSync(join(dir, 'running_log.txt'), `${logLines.join('\n')}\n`)
}
