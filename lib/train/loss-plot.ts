/** training_loss.svg and .png, as LLaMA-Factory's plot_loss writes training_loss.png: loss and eval loss by step. */
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { COLORS, type Series, lineChart } from '../util/chart.js'
import { svgToPng } from '../util/svg-png.js'
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

export async function writeLossPlot(
  dir: string,
  history: readonly LogRecord[],
  warn: (message: string) => void,
): Promise<string[]> {
  const train = history
    .filter((r) => typeof r.loss === 'number')
    .map((r) => [r.current_steps, r.loss!] as [number, number])
  // eval_loss, and with eval_on_each_dataset one eval_<name>_loss per dataset instead.
  const evals = new Map<string, [number, number][]>()
  for (const record of history) {
    for (const [key, value] of Object.entries(record)) {
      const name = /^eval_(?:(.+)_)?loss$/.exec(key)
      if (!name || typeof value !== 'number') continue
      const label = name[1] === undefined ? 'eval loss' : `eval loss: ${name[1]}`
      if (!evals.has(label)) evals.set(label, [])
      evals.get(label)!.push([record.current_steps, value])
    }
  }
  const series: Series[] = []
  // As LLaMA-Factory's plot: the raw loss faint under its smoothed curve; evaluations, being sparse, as dots.
  if (train.length >= 10) {
    const smoothed = smooth(train.map((p) => p[1]))
    series.push({ label: 'loss', points: train, opacity: 0.35 })
    series.push({ label: 'loss (smoothed)', points: train.map(([x], i) => [x, smoothed[i]!]), color: COLORS[0] })
  } else series.push({ label: 'loss', points: train })
  let color = 1
  for (const [label, points] of evals) {
    series.push({ label, points, markers: true, color: COLORS[color++ % COLORS.length] })
  }
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
