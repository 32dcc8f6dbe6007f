/** training_loss.svg and .png, as LLaMA-Factory's plot_loss writes training_loss.png: loss and eval loss by step. */
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { lineChart, svgToPng } from '../util/chart.js'
import type { LogRecord } from './events.js'
import { evalLosses } from './event-text.js'

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
  const series = [{ label: 'loss', points: train }]
  if (train.length >= 10) series.push({ label: 'loss (smoothed)', points: train.map(([x], i) => [x, smooth(train.map((p) => p[1]))[i]!] as [number, number]) })
  // eval_loss, or one eval_<name>_loss per dataset (eval_on_each_dataset).
  const evalKeys = [...new Set(history.flatMap((r) => evalLosses(r).map(([key]) => key)))]
  for (const key of evalKeys) {
    const points = history.flatMap((r) => (typeof r[key as 'eval_loss'] === 'number' ? [[r.current_steps, r[key as 'eval_loss']!] as [number, number]] : []))
    series.push({ label: key === 'eval_loss' ? 'eval loss' : key.replace(/^eval_(.+)_loss$/, 'eval loss: $1'), points })
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
