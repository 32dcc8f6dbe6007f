/**
 * The sweep's report: per strategy the runs' figures as mean ± std over the seeds, sentences computed from them
 * by the rule in statistics.ts, and two charts (forgetting against learning; learning per hour), written as
 * report.json, report.md and PNG + SVG. Every number is a run's own (its trainer's or its held-out scoring's)
 * or a mean / std of those; the report adds none.
 */
import { join, relative } from 'node:path'
import { writeFileAtomically } from '../util/atomic-dir.js'
import { barChart, scatterChart } from '../util/chart.js'
import { svgToPng } from '../util/svg-png.js'
import { formatBytes, formatCount } from '../util/format.js'
import { VERSION } from '../version.js'
import type { SweepPlan } from './plan.js'
import type { RunRecord, SweepOptions } from './sweep-types.js'
import { type Spread, type Verdict, formatSpread, spread, statement } from './statistics.js'

export interface StrategySummary {
  strategy: string
  runs: number
  seeds: number[]
  trainableParams: number
  totalParams: number
  tokens: Spread
  seconds: Spread
  tokensPerSecond: Spread
  peakMemoryBytes: Spread | null
  domainBefore: Spread
  domainAfter: Spread
  keepBefore: Spread
  keepAfter: Spread
  /** Held-out loss drop on the new domain (before − after): higher is more learned. */
  learned: Spread
  /** Held-out loss rise on the kept text (after − before): higher is more forgotten. */
  forgot: Spread
  /** learned per hour of the run's wall time. */
  learnedPerHour: Spread
}

export interface Statement {
  about: 'forgetting' | 'learning'
  x: string
  y: string
  verdict: Verdict
  text: string
}

export interface SweepReport {
  llamapro: string
  config: string
  strategies: string[]
  seeds: number[]
  steps: number | null
  device: string
  heldOut: { domain: string; keep: string }
  complete: boolean
  rule: string
  summaries: StrategySummary[]
  statements: Statement[]
  runs: RunRecord[]
}

export const RULE =
  'a difference is stated only when the mean ± std intervals over the seeds do not overlap (|Δmean| > std₁ + std₂, ' +
  'sample std); ' +
  'otherwise it is "within noise"; with one seed nothing is stated ("cannot tell: one seed")'

export function summarize(strategy: string, runs: readonly RunRecord[]): StrategySummary {
  const of = (f: (r: RunRecord) => number) => spread(runs.map(f))
  const memory = runs.map((r) => r.peakMemoryBytes).filter((v): v is number => v !== null)
  return {
    strategy,
    runs: runs.length,
    seeds: runs.map((r) => r.seed),
    trainableParams: runs[0]?.trainableParams ?? 0,
    totalParams: runs[0]?.totalParams ?? 0,
    tokens: of((r) => r.tokens),
    seconds: of((r) => r.seconds),
    tokensPerSecond: of((r) => r.tokensPerSecond),
    peakMemoryBytes: memory.length ? spread(memory) : null,
    domainBefore: of((r) => r.domain.before),
    domainAfter: of((r) => r.domain.after),
    keepBefore: of((r) => r.keep.before),
    keepAfter: of((r) => r.keep.after),
    learned: of((r) => r.domain.before - r.domain.after),
    forgot: of((r) => r.keep.after - r.keep.before),
    learnedPerHour: of((r) => (r.domain.before - r.domain.after) / (r.seconds / 3600)),
  }
}

/** Every pair of strategies, on forgetting and on learning. */
export function statements(summaries: readonly StrategySummary[]): Statement[] {
  const out: Statement[] = []
  for (let i = 0; i < summaries.length; i++) {
    for (let j = i + 1; j < summaries.length; j++) {
      const [x, y] = [summaries[i]!, summaries[j]!]
      // When both improved the kept text (its loss fell), "forgets" would mislead: say which gained more.
      const gained = x.forgot.mean < 0 && y.forgot.mean < 0
      const [lower, higher] = gained
        ? ['gains more on the kept text than', 'gains less on the kept text than']
        : ['forgets less than', 'forgets more than']
      const f = statement(
        { name: x.strategy, value: x.forgot },
        { name: y.strategy, value: y.forgot },
        lower,
        higher,
        'kept-text loss change',
      )
      out.push({ about: 'forgetting', x: x.strategy, y: y.strategy, ...f })
      // Learning is a loss drop: a lower drop is less learned.
      const l = statement(
        { name: x.strategy, value: x.learned },
        { name: y.strategy, value: y.learned },
        'learns less than',
        'learns more than',
        'new-domain loss drop',
      )
      out.push({ about: 'learning', x: x.strategy, y: y.strategy, ...l })
    }
  }
  return out
}

export interface ReportInput {
  options: SweepOptions
  plan: SweepPlan
  records: readonly RunRecord[]
  device: string
  complete: boolean
}

export function buildReport(input: ReportInput): SweepReport {
  const { plan, records, options } = input
  const summaries = plan.strategies
    .map((s) =>
      summarize(
        s.name,
        records.filter((r) => r.strategy === s.name),
      ),
    )
    .filter((s) => s.runs > 0)
  return {
    llamapro: VERSION,
    config: options.config,
    strategies: plan.strategies.map((s) => s.name),
    seeds: plan.seeds,
    steps: plan.steps,
    device: input.device,
    heldOut: {
      domain: options.eval?.length ? options.eval.join(',') : 'the val_size split of the training data',
      keep: options.keep.join(','),
    },
    complete: input.complete,
    rule: RULE,
    summaries,
    statements: statements(summaries),
    runs: [...records],
  }
}

function markdown(report: SweepReport, outDir: string, charts: string[]): string {
  const s = (v: Spread, digits = 3, signed = false) => formatSpread(v, digits, signed)
  const lines = [
    `# llamapro sweep: ${report.strategies.join(', ')}`,
    '',
    `Training YAML \`${report.config}\`; ${report.steps ?? "the YAML's"} steps per run; data-order seeds ` +
      `${report.seeds.join(', ')} ` +
      `(figures are mean ± sample std over the seeds); device ${report.device}; llamapro ${report.llamapro}.`,
    `Held-out new domain: ${report.heldOut.domain}. Kept text: ${report.heldOut.keep}.`,
    report.complete
      ? ''
      : `\n**Incomplete**: ${report.runs.length} run(s) finished so far; rerun the same command to continue.\n`,
    '| strategy | trainable params | tokens | wall time (s) | tokens/s | peak memory | new domain: before → after | ' +
      'kept text: before → after | learned (loss drop) | forgot (loss rise) |',
    '|---|---|---|---|---|---|---|---|---|---|',
  ]
  for (const x of report.summaries) {
    lines.push(
      `| ${x.strategy} | ${formatCount(x.trainableParams)} of ${formatCount(x.totalParams)} | ` +
        `${formatCount(Math.round(x.tokens.mean))} | ${s(x.seconds, 1)} | ${s(x.tokensPerSecond, 0)} | ` +
        `${x.peakMemoryBytes ? formatBytes(x.peakMemoryBytes.mean) : '-'} | ${s(x.domainBefore)} → ` +
        `${s(x.domainAfter)} | ${s(x.keepBefore)} → ${s(x.keepAfter)} | ${s(x.learned, 3, true)} | ` +
        `${s(x.forgot, 3, true)} |`,
    )
  }
  lines.push('', `What the numbers carry (${report.rule}):`, '')
  for (const st of report.statements) lines.push(`- ${st.text}`)
  lines.push('')
  for (const chart of charts.filter((c) => c.endsWith('.png') || !charts.includes(c.replace(/\.svg$/, '.png'))))
    lines.push(`![${chart}](${chart})`, '')
  lines.push(
    '',
    'Each run is an ordinary `llamapro train` output folder (`runs/<strategy>/seed-<n>/`); its figures are in its ' +
      '`sweep_run.json`. ' +
      "Wall time is the training loop's (all_results.json's train_runtime: without data preparation, loading and " +
      'saving); timings on a shared machine are noise unless measured in the same run.',
    '',
    '| run | seed | tokens | wall time (s) | tokens/s | new domain after | kept text after |',
    '|---|---|---|---|---|---|---|',
  )
  for (const r of report.runs) {
    lines.push(
      `| ${relative(outDir, r.dir)} | ${r.seed} | ${r.tokens} | ${r.seconds.toFixed(1)} | ` +
        `${r.tokensPerSecond.toFixed(0)} | ${r.domain.after.toFixed(4)} | ${r.keep.after.toFixed(4)} |`,
    )
  }
  return `${lines.join('\n')}\n`
}

/** The report's charts: forgetting against learning (points, ± std bars), learning per hour (± std whiskers). */
export function reportCharts(summaries: readonly StrategySummary[]): { scatter: string; perHour: string } {
  const scatter = scatterChart({
    title: 'Forgetting against learning (mean ± std over seeds)',
    xLabel: 'learned: held-out loss drop on the new domain',
    yLabel: 'forgot: held-out loss rise on the kept text',
    points: summaries.map((x) => {
      const [learned, forgot] = [x.learned, x.forgot]
      return { label: x.strategy, x: learned.mean, y: forgot.mean, xError: learned.std, yError: forgot.std }
    }),
  })
  const perHour = barChart({
    title: 'Learning per hour of training (new-domain loss drop per hour)',
    yLabel: 'loss drop per hour',
    legend: [summaries.some((x) => x.runs > 1) ? 'mean over seeds, whiskers ± std' : 'one seed'],
    groups: summaries.map((x) => ({
      label: x.strategy,
      values: [x.learnedPerHour.mean],
      errors: [x.learnedPerHour.std],
    })),
    format: (v) => v.toPrecision(3),
  })
  return { scatter, perHour }
}

export async function writeReport(
  outDir: string,
  input: ReportInput,
): Promise<{ report: SweepReport; files: string[] }> {
  const report = buildReport(input)
  const files: string[] = []
  const charts: string[] = []
  if (report.summaries.length > 0) {
    const { scatter, perHour } = reportCharts(report.summaries)
    for (const [name, svg] of [
      ['forgetting-vs-learning', scatter],
      ['learning-per-hour', perHour],
    ] as const) {
      await writeFileAtomically(join(outDir, `${name}.svg`), svg)
      charts.push(`${name}.svg`)
      const png = svgToPng(svg)
      if (png) {
        await writeFileAtomically(join(outDir, `${name}.png`), png)
        charts.push(`${name}.png`)
      }
    }
  }
  await writeFileAtomically(join(outDir, 'report.json'), `${JSON.stringify(report, null, 2)}\n`)
  await writeFileAtomically(join(outDir, 'report.md'), markdown(report, outDir, charts))
  files.push(join(outDir, 'report.md'), join(outDir, 'report.json'), ...charts.map((c) => join(outDir, c)))
  return { report, files }
}
