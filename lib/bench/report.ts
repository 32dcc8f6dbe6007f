/** `llamapro bench` output: terminal table, markdown report, JSON, and a chart of step time and memory. */
import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { barChart } from '../util/chart.js'
import { svgToPng } from '../util/svg-png.js'
import { formatBytes, formatCount } from '../util/format.js'
import { describeMachine } from './machine.js'
import type { BenchReport, StrategyResult } from './run-bench.js'

const ms = (v: number) => (v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2))
const flops = (v: number) =>
  v >= 1e12 ? `${(v / 1e12).toFixed(2)} T` : v >= 1e9 ? `${(v / 1e9).toFixed(2)} G` : `${(v / 1e6).toFixed(1)} M`

function columns(r: StrategyResult): string[] {
  return [
    r.strategy,
    `${ms(r.msPerStep.median)} (${ms(r.msPerStep.p10)}-${ms(r.msPerStep.p90)})`,
    r.tokensPerSecond.toFixed(0),
    formatCount(r.trainableParams),
    r.peakMemoryBytes === null ? '-' : formatBytes(r.peakMemoryBytes),
    flops(r.flopsPerToken),
    `${flops(r.achievedFlopsPerSecond)}FLOP/s`,
    r.mfu === null ? '-' : `${(100 * r.mfu).toFixed(1)}%`,
    r.baseline ? ms(r.baseline.msPerStep.median) : '-',
    r.ratio === undefined ? '-' : r.ratio.toFixed(3),
  ]
}

const HEADER = [
  'strategy',
  'ms/step median (p10-p90)',
  'tokens/s',
  'trainable',
  'peak memory',
  'FLOP/token',
  'achieved',
  'MFU',
  'PyTorch ms',
  'ratio',
]

export function formatTable(report: BenchReport): string {
  const rows = [HEADER, ...report.results.map(columns)]
  const widths = HEADER.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)))
  const line = (r: string[]) =>
    r.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!))).join('  ')
  return [line(rows[0]!), ...rows.slice(1).map(line)].join('\n')
}

/** Observations against the goals: ratios, and LLaMA-Pro's step time against the analytic FLOP ratio. */
export function findings(report: BenchReport): string[] {
  const out: string[] = []
  const full = report.results.find((r) => r.strategy === 'full')
  for (const r of report.results) {
    if (r.strategy.startsWith('pro:') && full) {
      // With --paired, the comparison uses the steps timed alternately with full fine-tuning's.
      const [mine, theirs] = r.paired && full.paired ? [r.paired, full.paired] : [r, full]
      const timeRatio = mine.msPerStep.median / theirs.msPerStep.median
      const flopRatio = r.flopsPerToken / full.flopsPerToken
      const off = timeRatio / flopRatio - 1
      // The FLOP count covers matmuls only; the optimizer update (memory-bound, proportional to the trainable
      // parameters) is the largest part it leaves out, so the ratio is also given without it.
      const computeRatio = (mine.msPerStep.median - mine.msUpdate) / (theirs.msPerStep.median - theirs.msUpdate)
      out.push(
        `${r.strategy}: step time ${(100 * timeRatio).toFixed(1)}% of full ` +
          `fine-tuning${r.paired && full.paired ? ' (paired: steps timed alternately)' : ''}, analytic FLOPs ` +
          `${(100 * flopRatio).toFixed(1)}% ` +
          `(${off >= 0 ? '+' : ''}${(100 * off).toFixed(1)}% from proportional; goal within 5%: ` +
          `${Math.abs(off) <= 0.05 ? 'met' : 'missed'}). ` +
          `Without the optimizer update (${theirs.msUpdate.toFixed(1)} ms of full fine-tuning's step, ` +
          `${mine.msUpdate.toFixed(1)} ms of ${r.strategy}'s), ` +
          `forward and backward take ${(100 * computeRatio).toFixed(1)}% ` +
          `(${computeRatio / flopRatio - 1 >= 0 ? '+' : ''}${(100 * (computeRatio / flopRatio - 1)).toFixed(1)}% ` +
          `from proportional)`,
      )
    }
    const expectedOptimizer = 2 * 4 * r.trainableParams
    out.push(
      `${r.strategy}: measured gradient memory ${formatBytes(r.gradientBytes)}, optimizer state ` +
        `${formatBytes(r.optimizerBytes)} ` +
        `for ${formatCount(r.trainableParams)} trainable parameters ` +
        `(${r.optimizerBytes === expectedOptimizer && r.gradientBytes === 4 * r.trainableParams ? 'exactly the trainable ones: frozen parameters cost none' : 'NOT only the trainable ones'})`,
    )
  }
  return out
}

export function markdownReport(report: BenchReport, command: string, goalRatio?: number): string {
  const rows = [HEADER, HEADER.map(() => '---'), ...report.results.map(columns)].map((r) => `| ${r.join(' | ')} |`)
  const c = report.config
  const lines = [
    `# llamapro bench: ${c.model}`,
    '',
    `Machine: ${describeMachine(report.machine)}; device ${report.device}`,
    `Command: \`${command}\``,
    `Shape: ${c.layers} layers, hidden ${c.hidden}, vocab ${c.vocab}; batch ${c.batch} x ${c.seq} tokens, ` +
      `${c.dtype}; ${c.warmup} warm-up and ${c.steps} timed steps; ${c.threads} intra-op thread(s) for both sides.`,
    report.baselineTorch
      ? `Baseline: PyTorch ${report.baselineTorch} eager (bench/reference/bench_train_step.py), same model shape, ` +
        `batch, strategy and threads, run in the same invocation.`
      : 'Baseline: none.',
    '',
    ...rows,
    '',
    '## Findings',
    '',
    ...findings(report).map((f) => `- ${f}`),
  ]
  if (goalRatio !== undefined) {
    const ratios = report.results.filter((r) => r.ratio !== undefined)
    for (const r of ratios)
      lines.push(
        `- ${r.strategy}: llamapro / PyTorch = ${r.ratio!.toFixed(3)} (goal <= ${goalRatio}: ` +
          `${r.ratio! <= goalRatio ? 'met' : 'missed'})`,
      )
  }
  for (const note of report.notes) lines.push(`- ${note}`)
  return lines.join('\n')
}

export async function writeReport(
  dir: string,
  report: BenchReport,
  command: string,
  goalRatio?: number,
): Promise<string[]> {
  await mkdir(dir, { recursive: true })
  const written = [join(dir, 'report.json'), join(dir, 'report.md')]
  await writeFile(written[0]!, `${JSON.stringify({ command, ...report }, null, 2)}\n`)
  await writeFile(written[1]!, `${markdownReport(report, command, goalRatio)}\n`)
  const hasBaseline = report.results.some((r) => r.baseline)
  const charts = [
    [
      'step-time',
      barChart({
        title: `Step time per strategy (${report.config.model}, ${report.device})`,
        yLabel: 'ms per step',
        legend: hasBaseline ? ['llamapro', 'PyTorch eager'] : ['llamapro'],
        groups: report.results.map((r) => ({
          label: r.strategy,
          values: hasBaseline ? [r.msPerStep.median, r.baseline?.msPerStep.median ?? NaN] : [r.msPerStep.median],
        })),
        format: ms,
      }),
    ],
    [
      'memory',
      barChart({
        title: `Peak memory per strategy (${report.config.model}, ${report.device})`,
        yLabel: 'MiB',
        legend: ['peak (measured)', 'gradients + optimizer (measured)'],
        groups: report.results.map((r) => ({
          label: r.strategy,
          values: [(r.peakMemoryBytes ?? NaN) / 2 ** 20, (r.gradientBytes + r.optimizerBytes) / 2 ** 20],
        })),
        format: (v) => v.toFixed(0),
      }),
    ],
  ] as const
  for (const [name, svg] of charts) {
    await writeFile(join(dir, `${name}.svg`), svg)
    written.push(join(dir, `${name}.svg`))
    const png = svgToPng(svg)
    if (png) {
      await writeFile(join(dir, `${name}.png`), png)
      written.push(join(dir, `${name}.png`))
    }
  }
  return written
}
