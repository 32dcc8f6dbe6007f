/** training_loss.svg and .png, as LLaMA-Factory's plot_loss writes training_loss.png: loss and eval loss by step. */
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { lineChart, svgToPng } from '../util/chart.js'
import type { LogRecord } from './events.js'

/** Exponential moving average, as LLaMA-Factory smooths its loss plot. */
export function smooth(values: readonly number[], weight = 0.9): number[] {
  const out: number[] = []
  let last = values[0] ?? 0
  for (const v of values) {
    last = last * weight + (1 - weight) * v
    out.push(last)
  }
  return out
}

export async function writeLossPlot(dir: string, history: readonly LogRecord[], warn: (message: string) => void): Promise<string[]> {
  const train = history.filter((r) => typeof r.loss === 'number').map((r) => [r.current_steps, r.loss!] as [number, number])
  const evals = history.filter((r) => typeof r.eval_loss === 'number').map((r) => [r.current_steps, r.eval_loss!] as [number, number])
  const series = [{ label: 'loss', points: train }]
  if (train.length >= 10) series.push({ label: 'loss (smoothed)', points: train.map(([x], i) => [x, smooth(train.map((p) => p[1]))[i]!] as [number, number]) })
  if (evals.length > 0) series.push({ label: 'eval loss', points: evals })
  const svg = lineChart({ title: 'Training loss', xLabel: 'step', yLabel: 'loss', series })
  const written = [join(dir, 'training_loss.svg')]
  await writeFile(written[0]!, svg)
  const png = svgToPng(svg)
  if (png) {
    written.push(join(dir, 'training_loss.png'))
    await writeFile(written[1]!, png)
  } else {
    warn('no PNG renderer for this platform (@resvg/resvg-js): wrote training_loss.svg only')
  }
  return written
}
