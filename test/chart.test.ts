// The charts (lib/util/chart.ts) as a person sees them: every text inside the picture and clear of every other
// (measured by resvg with the real font, not by the charts' own width estimate), legends clear of the data, the PNG
// blank along its edges, whiskers where the seeds' std puts them, long runs drawn without losing their spikes, and
// the module loadable by a browser (nothing of Node's in it).
import t, { type Test } from 'tap'
import { execFile } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { promisify } from 'node:util'
import resvg from '@resvg/resvg-js'
import { demoCharts } from '../lib/demo/demo.js'
import { reportCharts, summarize } from '../lib/sweep/report.js'
import type { RunRecord } from '../lib/sweep/run.js'
import type { LogRecord } from '../lib/train/events.js'
import { writeLossPlot } from '../lib/train/loss-plot.js'
import {
  type Point,
  barChart,
  downsample,
  downsampleBand,
  lineChart,
  scatterChart,
  textWidth,
  wrapText,
} from '../lib/util/chart.js'
import { svgToPng } from '../lib/util/svg-png.js'
import { decodePng } from './helpers/png.js'
import { REPO_ROOT } from './helpers/python.js'

const RENDER = { font: { loadSystemFonts: true, defaultFontFamily: 'DejaVu Sans' } }

interface Box {
  x: number
  y: number
  width: number
  height: number
}

function svgSize(svg: string): { width: number; height: number; open: string } {
  const open = /^<svg [^>]*>/.exec(svg)![0]
  return {
    width: Number(/ width="([\d.]+)"/.exec(open)![1]),
    height: Number(/ height="([\d.]+)"/.exec(open)![1]),
    open,
  }
}

/** Where resvg draws ink for one fragment of a chart (alone in a picture of the chart's size): glyph outlines. */
function inkBox(svg: string, fragment: string): Box {
  const box = new resvg.Resvg(`${svgSize(svg).open}\n${fragment}\n</svg>`, RENDER).getBBox()
  if (!box) throw new Error(`nothing drawn for ${fragment}`)
  return { x: box.x, y: box.y, width: box.width, height: box.height }
}

const all = (svg: string, pattern: RegExp) => [...svg.matchAll(pattern)].map((m) => m[0])
const texts = (svg: string) => all(svg, /<text [^>]*>[^<]*<\/text>/g)
const legendItems = (svg: string) => all(svg, /<g class="legend-item">.*?<\/g>/g)
const marks = (svg: string) =>
  all(svg, /<(?:rect class="bar"|path class="(?:line|band|whisker)"|circle class="marker")[^>]*\/>/g)
const content = (element: string) => />([^<]*)<\/text>/.exec(element)?.[1] ?? element

const overlapping = (a: Box, b: Box) =>
  Math.min(a.x + a.width, b.x + b.width) - Math.max(a.x, b.x) > 0.5 &&
  Math.min(a.y + a.height, b.y + b.height) - Math.max(a.y, b.y) > 0.5

/** Every text and legend entry inside the picture, no two texts on each other, legend entries clear of the data. */
function checkLayout(t: Test, name: string, svg: string): void {
  const { width, height } = svgSize(svg)
  const inside = (b: Box) => b.x >= 0 && b.y >= 0 && b.x + b.width <= width && b.y + b.height <= height
  const textBoxes = texts(svg).map((e) => ({ e, box: inkBox(svg, e) }))
  const outside = textBoxes
    .filter(({ box }) => !inside(box))
    .map(({ e, box }) => `${content(e)} at ${JSON.stringify(box)}`)
  t.same(outside, [], `${name}: all ${textBoxes.length} texts inside ${width}x${height}`)
  const collisions: string[] = []
  textBoxes.forEach((a, i) =>
    textBoxes
      .slice(i + 1)
      .forEach((b) => overlapping(a.box, b.box) && collisions.push(`${content(a.e)} / ${content(b.e)}`)),
  )
  t.same(collisions, [], `${name}: no text on another`)
  const items = legendItems(svg).map((e) => ({ e, box: inkBox(svg, e) }))
  t.same(
    items.filter(({ box }) => !inside(box)).map(({ e }) => e),
    [],
    `${name}: all ${items.length} legend entries inside`,
  )
  const markBoxes = marks(svg).map((e) => inkBox(svg, e))
  const onData = items.filter(({ box }) => markBoxes.some((m) => overlapping(box, m)))
  t.same(
    onData.map(({ e }) => e),
    [],
    `${name}: the legend covers no bar, line, band, whisker or marker`,
  )
}

const std = (values: number[]) => {
  const mean = values.reduce((s, v) => s + v, 0) / values.length
  return Math.sqrt(values.reduce((s, v) => s + (v - mean) ** 2, 0) / (values.length - 1))
}
const mean = (values: number[]) => values.reduce((s, v) => s + v, 0) / values.length

/** Held-out losses and curves as the demo collects them: 3 seeds of each fine-tune. */
function demoInput() {
  const runs = {
    llamaPro: [
      { a: 0.571, b: 0.957 },
      { a: 0.574, b: 0.955 },
      { a: 0.575, b: 0.957 },
    ],
    fullFineTune: [
      { a: 0.628, b: 0.842 },
      { a: 0.633, b: 0.837 },
      { a: 0.636, b: 0.841 },
    ],
  }
  const curve = (start: number, seed: number): [number, number][] =>
    Array.from({ length: 15 }, (_, i) => [10 * (i + 1), start * Math.exp(-i / 8) + 0.02 * Math.sin(seed * 7 + i)])
  const seedCurves = {
    llamaPro: [1, 2, 3].map((s) => curve(1.1, s)),
    fullFineTune: [1, 2, 3].map((s) => curve(1.05, s)),
  }
  return { base: { a: 0.521, b: 1.095 }, runs, seeds: [1, 2, 3], seedCurves }
}

/** Value → y pixel of a chart's y axis, read off its grid lines and their tick labels. */
function yAxisOf(svg: string): (value: number) => number {
  const grid = all(svg, /<line [^>]*stroke="#e5e5e5"\/>/g).map((e) => Number(/y1="([-\d.]+)"/.exec(e)![1]))
  const labels = all(svg, /<text [^>]*text-anchor="end" class="tick">[^<]*<\/text>/g).map((e) => {
    const text = content(e)
    return Number(text.replace(/k$/, '')) * (text.endsWith('k') ? 1000 : 1)
  })
  if (grid.length !== labels.length || grid.length < 2)
    throw new Error(`${grid.length} grid lines, ${labels.length} labels`)
  const [v0, v1, y0, y1] = [labels[0]!, labels.at(-1)!, grid[0]!, grid.at(-1)!]
  return (value) => y0 + ((value - v0) / (v1 - v0)) * (y1 - y0)
}

t.test('the width estimate is never narrower than the real glyphs, and not wasteful', async (t) => {
  const legend = legendItems(demoCharts(demoInput()).bars).map((e) => content(/<text[^>]*>[^<]*<\/text>/.exec(e)![0]))
  t.equal(legend.length, 3, `the demo's legend: ${legend.join(' | ')}`)
  const printable = Array.from({ length: 95 }, (_, i) => String.fromCharCode(32 + i)).join('')
  const samples = [
    ...legend,
    printable,
    'WWWWWWWWWW',
    'iiiiiiiiii',
    'mean ± std → loss Δ',
    'freeze:first-2,modules=mlp',
  ]
  for (const bold of [false, true]) {
    for (const size of [10, 12, 16]) {
      for (const text of samples) {
        const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="2000" height="60" font-family="DejaVu Sans">`
        const escaped = text.replace(/&/g, '&amp;').replace(/</g, '&lt;')
        const element = `<text x="10" y="40" font-size="${size}"${bold ? ' font-weight="bold"' : ''}>${escaped}</text>`
        const real = new resvg.Resvg(`${svg}${element}</svg>`, RENDER).getBBox()!.width
        const estimate = textWidth(text, size, bold)
        t.ok(
          estimate >= real,
          `${bold ? 'bold ' : ''}${size}px "${text.slice(0, 30)}": ${estimate.toFixed(1)} >= ${real.toFixed(1)}`,
        )
        if (/^[ -~]+$/.test(text) && text.length > 5)
          t.ok(estimate <= real * 1.15 + 3, `and within 15%: ${estimate.toFixed(1)} vs ${real.toFixed(1)}`)
      }
    }
  }
  t.same(
    wrapText('freeze:first-2,modules=mlp', 100, 12),
    ['freeze:first-2,', 'modules=mlp'],
    'names break at their punctuation',
  )
  t.ok(
    wrapText('a'.repeat(40), 50, 12).every((line) => textWidth(line, 12) <= 50),
    'an unbreakable word is cut to the width',
  )
})

t.test('nothing clipped or overlapping: the demo, long labels, narrow charts, every chart kind', async (t) => {
  const demo = demoCharts(demoInput())
  checkLayout(t, 'demo.svg', demo.bars)
  checkLayout(t, 'demo-training.svg', demo.training)
  const legend = legendItems(demo.bars).map((e) => content(/<text[^>]*>[^<]*<\/text>/.exec(e)![0]))
  const groups = [
    { label: 'corpus A: prose (keep)', values: [0.52, 0.57, 0.63], errors: [0, 0.002, 0.004] },
    { label: 'corpus B: code (learn)', values: [1.09, 0.96, 0.84], errors: [0, 0.001, 0.003] },
  ]
  for (const width of [720, 520, 400, 320]) {
    const title = 'Held-out loss after learning corpus B (lower is better)'
    checkLayout(
      t,
      `demo bars at ${width}px`,
      barChart({ title, yLabel: 'cross-entropy', legend, groups, width, format: (v) => v.toFixed(2) }),
    )
  }
  const curve = (k: number): Point[] => Array.from({ length: 300 }, (_, i) => [i * 10, 3 / (1 + i / 50) + k * 0.1])
  for (const width of [720, 480, 360]) {
    const svg = lineChart({
      title:
        'Training loss of every strategy the sweep ran, on the new domain, by optimizer step (mean ± std over seeds)',
      xLabel: 'optimizer step (each of 4 accumulated micro-batches of 8 sequences)',
      yLabel: 'cross-entropy on the held-out new domain',
      width,
      xMax: 5000,
      series: [
        { label: legend[1]!, points: curve(0), std: curve(0).map(() => 0.05) },
        { label: legend[2]!, points: curve(1), dashed: true },
        { label: 'eval loss', points: curve(2).filter((_, i) => i % 50 === 0), markers: true },
      ],
    })
    checkLayout(t, `line chart with the demo's legend at ${width}px`, svg)
    if (width === 720) t.ok(svgSize(svg).height >= 420, 'the chart keeps (or grows beyond) its height')
  }
  checkLayout(
    t,
    'short legend beside the plot',
    lineChart({ title: 'Loss', xLabel: 'step', yLabel: 'loss', series: [{ label: 'loss', points: curve(0) }] }),
  )
  checkLayout(
    t,
    'log y',
    lineChart({
      title: 'Loss',
      xLabel: 'step',
      yLabel: 'loss',
      logY: true,
      series: [{ label: 'loss', points: curve(0) }],
      legend: 'bottom',
    }),
  )
  // Over three decades a log axis ticks 1-2-5 or decades; a non-finite loss breaks the line instead of bridging it.
  const decades = lineChart({
    title: 'Loss',
    xLabel: 'step',
    yLabel: 'loss',
    logY: true,
    series: [
      {
        label: 'loss',
        points: [
          [0, 20],
          [1, 3],
          [2, NaN],
          [3, 0.4],
          [4, 0.02],
        ],
      },
    ],
  })
  const ticks = all(decades, /<text [^>]*text-anchor="end" class="tick">[^<]*<\/text>/g).map(content)
  t.ok(
    ticks.length >= 3 && ticks.every((v) => /^(0\.0[125]|0\.[125]|[125]|[125]0)$/.test(v)),
    `log ticks ${ticks.join(' ')}`,
  )
  t.equal(
    (/<path class="line" d="([^"]*)"/.exec(decades)![1]!.match(/M/g) ?? []).length,
    2,
    'two pieces of line around the NaN',
  )
  checkLayout(t, 'log y over decades', decades)
  // Fourteen series do not fit beside a 300-pixel chart: their legend goes below, in rows.
  const crowd = lineChart({
    title: 'Loss',
    xLabel: 'step',
    yLabel: 'loss',
    height: 300,
    series: Array.from({ length: 14 }, (_, k) => ({ label: `run ${k}`, points: curve(k) })),
  })
  const rows = new Set(legendItems(crowd).map((e) => /<text [^>]*y="([\d.]+)"/.exec(e)![1]))
  t.ok(rows.size >= 2 && rows.size < 14, `the legend in ${rows.size} rows`)
  checkLayout(t, 'fourteen series', crowd)
  const many = Array.from({ length: 12 }, (_, i) => ({
    label: `freeze:last-${i + 1},modules=mlp,self_attn`,
    values: [12345.6 * (i + 1), 9876.5 * i - 20000],
  }))
  checkLayout(
    t,
    'many narrow bars, long names, wide and negative values',
    barChart({
      title: 'Step time',
      yLabel: 'ms',
      legend: ['llamapro', 'PyTorch eager'],
      groups: many,
      width: 480,
      format: (v) => v.toFixed(1),
    }),
  )
  const points = [
    { label: 'freeze:first-2,modules=mlp (the one at the right edge)', x: 1, y: 0.3, xError: 0.05, yError: 0.02 },
    { label: 'full', x: 0.98, y: 0.31, xError: 0.01, yError: 0.01 },
    { label: 'pro:2 at the top', x: 0.5, y: 0.4, yError: 0.01 },
    { label: 'last:2 at the bottom left', x: -0.1, y: -0.05 },
  ]
  for (const width of [720, 420]) {
    checkLayout(
      t,
      `scatter at ${width}px`,
      scatterChart({
        title: 'Forgetting against learning (mean ± std over seeds)',
        xLabel: 'learned: held-out loss drop',
        yLabel: 'forgot: held-out loss rise',
        points,
        width,
      }),
    )
  }
})

t.test('the PNG: blank along every edge, ink where the legend is; the file decodes to what resvg drew', async (t) => {
  const svg = demoCharts(demoInput()).bars
  const png = decodePng(svgToPng(svg)!)
  const { width, height } = svgSize(svg)
  t.same([png.width, png.height], [2 * width, 2 * height], 'rendered at twice the size')
  const direct = new resvg.Resvg(svg, { ...RENDER, background: 'white', fitTo: { mode: 'zoom', value: 2 } }).render()
  t.ok(
    Buffer.from(direct.pixels).equals(Buffer.from(png.pixels)),
    'the decoded file holds exactly the pixels resvg rendered',
  )
  const ink = (image: { width: number; pixels: Uint8Array }, x0: number, y0: number, x1: number, y1: number) => {
    let count = 0
    for (let y = Math.max(0, Math.floor(y0)); y < Math.ceil(y1); y++) {
      for (let x = Math.max(0, Math.floor(x0)); x < Math.min(image.width, Math.ceil(x1)); x++) {
        const at = 4 * (y * image.width + x)
        if (image.pixels[at]! < 250 || image.pixels[at + 1]! < 250 || image.pixels[at + 2]! < 250) count++
      }
    }
    return count
  }
  const band = 8 // 4 pixels of the SVG at 2x
  t.equal(ink(png, png.width - band, 0, png.width, png.height), 0, 'nothing drawn in the right-most columns')
  t.equal(ink(png, 0, 0, band, png.height), 0, 'nor the left-most')
  t.equal(ink(png, 0, 0, png.width, band), 0, 'nor the top rows')
  t.equal(ink(png, 0, png.height - band, png.width, png.height), 0, 'nor the bottom rows')
  for (const item of legendItems(svg)) {
    const b = inkBox(svg, item)
    t.ok(
      ink(png, 2 * b.x, 2 * b.y, 2 * (b.x + b.width), 2 * (b.y + b.height)) > 200,
      `legend entry drawn: ${content(/<text[^>]*>[^<]*<\/text>/.exec(item)![0])}`,
    )
  }
  // The edge check catches what the old demo.png did: a legend running off the right edge (here cut in "tune").
  const clipped =
    '<svg xmlns="http://www.w3.org/2000/svg" width="300" height="80">' +
    '<text x="240" y="40" font-size="12">full fine-tune on B, mean of 3</text></svg>'
  const bad = decodePng(svgToPng(clipped)!)
  t.ok(ink(bad, bad.width - band, 0, bad.width, bad.height) > 0, 'a clipped legend is seen at the edge')
})

t.test('whiskers at mean ± std: bar charts, the demo, the sweep', async (t) => {
  const whiskers = (svg: string) =>
    all(svg, /<path class="whisker" d="([^"]*)"/g).map((e) => {
      const [cx, lo, hi] = /d="M([-\d.]+),([-\d.]+) V([-\d.]+)/.exec(e)!.slice(1).map(Number)
      return { cx: cx!, lo: lo!, hi: hi! }
    })
  const bars = (svg: string) =>
    all(svg, /<rect class="bar" [^>]*\/>/g).map((e) => {
      const [x, y, w, h] = ['x', 'y', 'width', 'height'].map((k) =>
        Number(new RegExp(` ${k}="([-\\d.]+)"`).exec(e)![1]),
      )
      return { center: x! + w! / 2, top: y!, bottom: y! + h! }
    })
  const values = [
    [2, 3, 4],
    [1.5, 2.5, 3.5],
  ]
  const errors = [
    [0, 0.2, 0.4],
    [0.1, 0, 0.3],
  ]
  const svg = barChart({
    title: 't',
    yLabel: 'y',
    legend: ['a', 'b', 'c'],
    groups: values.map((v, i) => ({ label: `g${i}`, values: v, errors: errors[i] })),
  })
  const y = yAxisOf(svg)
  const found = whiskers(svg)
  t.equal(found.length, 4, 'one whisker per non-zero error')
  const drawn = bars(svg)
  let k = 0
  values.flat().forEach((v, i) => {
    t.ok(Math.abs(drawn[i]!.top - y(v)) < 0.3, `bar ${i} top at ${v}`)
    const e = errors.flat()[i]!
    if (e === 0) return
    const w = found[k++]!
    t.ok(Math.abs(w.cx - drawn[i]!.center) < 0.15, `whisker ${k} on bar ${i}`)
    t.ok(Math.abs(w.lo - y(v - e)) < 0.3 && Math.abs(w.hi - y(v + e)) < 0.3, `whisker ${k} from ${v - e} to ${v + e}`)
  })

  const input = demoInput()
  const demo = demoCharts(input)
  const demoWhiskers = whiskers(demo.bars)
  t.equal(
    demoWhiskers.length,
    4,
    'demo.svg: LLaMA-Pro and the full fine-tune, on A and on B; the base model has no spread',
  )
  const dy = yAxisOf(demo.bars)
  const arms = [input.runs.llamaPro, input.runs.fullFineTune]
  const expected = (['a', 'b'] as const).flatMap((key) =>
    arms.map((runs) => ({ m: mean(runs.map((r) => r[key])), s: std(runs.map((r) => r[key])) })),
  )
  expected.forEach(({ m, s }, i) => {
    const w = demoWhiskers[i]!
    t.ok(
      Math.abs(w.lo - dy(m - s)) < 0.3 && Math.abs(w.hi - dy(m + s)) < 0.3,
      `demo whisker ${i}: ${m.toFixed(4)} ± ${s.toFixed(4)}`,
    )
  })
  const bands = all(demo.training, /<path class="band" d="([^"]*)"/g)
  t.equal(bands.length, 2, 'demo-training.svg: a ± std band around each mean curve')
  const ty = yAxisOf(demo.training)
  const upper = /d="M([-\d.]+),([-\d.]+)/.exec(bands[0]!)!.slice(1).map(Number)
  const first = input.seedCurves.llamaPro.map((c) => c[0]![1])
  t.ok(
    Math.abs(upper[1]! - ty(mean(first) + std(first))) < 0.3,
    "the band starts at mean + std of the seeds' first losses",
  )

  // Per seed: the new-domain loss drop and the wall time in seconds.
  const seeded: [string, [number, number][]][] = [
    [
      'pro:2',
      [
        [0.5, 36],
        [0.6, 40],
        [0.4, 38],
      ],
    ],
    [
      'full',
      [
        [0.8, 60],
        [0.7, 66],
        [0.9, 63],
      ],
    ],
    ['last:2', [[0.3, 30]]],
  ]
  const record = (strategy: string, seed: number, learned: number, seconds: number): RunRecord => ({
    strategy,
    seed,
    dir: `/x/${strategy}/${seed}`,
    model: '/m',
    trainableParams: 10,
    totalParams: 20,
    steps: 5,
    tokens: 100,
    seconds,
    tokensPerSecond: 3,
    peakMemoryBytes: null,
    device: 'cpu',
    domain: { before: 3, after: 3 - learned, tokens: 50 },
    keep: { before: 2, after: 2 + learned / 3, tokens: 50 },
  })
  const summaries = seeded.map(([name, runs]) =>
    summarize(
      name,
      runs.map(([learned, seconds], k) => record(name, k + 1, learned, seconds)),
    ),
  )
  const charts = reportCharts(summaries)
  const perHour = whiskers(charts.perHour)
  t.equal(perHour.length, 2, 'learning per hour: whiskers for the two strategies with three seeds, none for one seed')
  const py = yAxisOf(charts.perHour)
  seeded.slice(0, 2).forEach(([name, runs], i) => {
    const rates = runs.map(([learned, seconds]) => learned / (seconds / 3600))
    const [m, s] = [mean(rates), std(rates)]
    t.ok(
      Math.abs(perHour[i]!.hi - py(m + s)) < 0.3 && Math.abs(perHour[i]!.lo - py(m - s)) < 0.3,
      `${name}: ${m.toFixed(2)} ± ${s.toFixed(2)} per hour`,
    )
  })
  t.equal(
    all(charts.scatter, /class="whisker"/g).length,
    4,
    'forgetting against learning: x and y error bars for the two seeded strategies',
  )
  checkLayout(t, 'learning-per-hour', charts.perHour)
  checkLayout(t, 'forgetting-vs-learning', charts.scatter)
})

t.test("downsample keeps the first, the last and every bucket's extremes, within maxPoints", async (t) => {
  let state = 12345
  const random = () => (state = (state * 1103515245 + 12345) % 2 ** 31) / 2 ** 31
  const points: Point[] = []
  let y = 5
  for (let i = 0; i < 100_000; i++) points.push([i, (y += random() - 0.5)])
  const spikes = [777, 31_415, 64_000, 99_001]
  for (const i of spikes) points[i]![1] = 1000 + i
  points[50_000]![1] = -1000
  points[70_000]![1] = NaN
  for (const maxPoints of [2, 3, 100, 1001, 1440]) {
    const kept = downsample(points, maxPoints)
    t.ok(kept.length <= maxPoints, `${kept.length} <= ${maxPoints}`)
    t.equal(kept[0], points[0], 'the first point')
    t.equal(kept.at(-1), points.at(-1), 'the last point')
    t.ok(
      kept.every((p, i) => i === 0 || p[0] > kept[i - 1]![0]),
      'in order, each point once',
    )
    if (maxPoints >= 100) {
      t.ok(maxPoints - kept.length <= 2, 'the budget is used')
      for (const i of [...spikes, 50_000, 70_000]) t.ok(kept.includes(points[i]!), `keeps the extreme at ${i}`)
      // Every bucket's own lowest and highest, found here by brute force over the same buckets.
      const buckets = Math.floor((maxPoints - 2) / 2)
      for (let b = 0; b < buckets; b += 97) {
        const slice = points.slice(1 + Math.floor((b * 99_998) / buckets), 1 + Math.floor(((b + 1) * 99_998) / buckets))
        const finite = slice.filter((p) => Number.isFinite(p[1]))
        const low = finite.reduce((m, p) => (p[1] < m[1] ? p : m))
        // A non-finite value (a diverged loss) is the bucket's highest.
        const high = slice.find((p) => !Number.isFinite(p[1])) ?? finite.reduce((m, p) => (p[1] > m[1] ? p : m))
        t.ok(kept.includes(low) && kept.includes(high), `bucket ${b}: its lowest and highest`)
      }
    }
  }
  t.same(downsample(points.slice(0, 10), 10), points.slice(0, 10), 'short series are kept whole')
  t.throws(() => downsample(points, 1), /maxPoints must be at least 2, got 1/)
  const band = points.map(([x, v]): [number, number, number] => [x, v - 1, v + 1])
  const keptBand = downsampleBand(band, 500)
  t.ok(
    keptBand.length <= 500 && keptBand.includes(band[31_415]!) && keptBand.includes(band[50_000]!),
    'bands keep their extremes too',
  )

  // A 100,000-step run draws within about twice the plot's width in points, spike included, without a stack overflow.
  const svg = lineChart({
    title: 'Training loss',
    xLabel: 'step',
    yLabel: 'loss',
    series: [{ label: 'loss', points: points.filter((p) => Number.isFinite(p[1])) }],
  })
  const d = /<path class="line" d="([^"]*)"/.exec(svg)![1]!
  const vertices = d
    .split(/[ML]/)
    .filter(Boolean)
    .map((v) => v.split(',').map(Number))
  t.ok(vertices.length <= 2 * 720, `${vertices.length} vertices drawn`)
  const yAt = yAxisOf(svg)
  t.ok(
    Math.abs(Math.min(...vertices.map((v) => v[1]!)) - yAt(1000 + 99_001)) < 0.3,
    'the highest spike reaches its value',
  )
})

t.test('training_loss.svg: the raw loss under its smoothed curve, each eval dataset as dots', async (t) => {
  const dir = t.testdir()
  const history = Array.from({ length: 40 }, (_, i) => {
    const record: Record<string, number | string> = {
      current_steps: i + 1,
      total_steps: 40,
      loss: 3 - i / 20,
      epoch: 1,
      percentage: 0,
      elapsed_time: '0:00:01',
      remaining_time: '0:00:01',
      elapsed_seconds: 1,
    }
    if ((i + 1) % 10 === 0) Object.assign(record, { eval_alpaca_loss: 2.9 - i / 25, eval_code_loss: 3.1 - i / 30 })
    return record as unknown as LogRecord
  })
  const written = await writeLossPlot(dir, history, () => t.fail('no warning'))
  t.same(
    written.map((f) => f.slice(dir.length + 1)),
    ['training_loss.svg', 'training_loss.png'],
  )
  const svg = readFileSync(written[0]!, 'utf8')
  const labels = legendItems(svg).map((e) => content(/<text[^>]*>[^<]*<\/text>/.exec(e)![0]))
  t.same(labels, ['loss', 'loss (smoothed)', 'eval loss: alpaca', 'eval loss: code'])
  t.equal(all(svg, /<circle class="marker"/g).length, 8, 'four evaluations of each dataset, as dots')
  checkLayout(t, 'training_loss.svg', svg)
  const png = decodePng(readFileSync(written[1]!))
  t.same([png.width, png.height], [2 * svgSize(svg).width, 2 * svgSize(svg).height])
})

t.test(
  'dist/util/chart.js loads as a browser would: no Node import, no require, only its own sibling modules',
  async (t) => {
    const dir = join(REPO_ROOT, 'dist', 'util')
    const seen = new Set<string>()
    const visit = (file: string) => {
      if (seen.has(file)) return
      seen.add(file)
      const source = readFileSync(join(dir, file), 'utf8')
      t.notMatch(source, /node:/, `${file}: no node: import`)
      t.notMatch(source, /\brequire\s*\(/, `${file}: no require(`)
      t.notMatch(source, /\bimport\s*\(/, `${file}: no dynamic import`)
      for (const [, specifier] of source.matchAll(/(?:^|\n)\s*(?:import|export)\b[^'"]*?from\s*['"]([^'"]+)['"]/g)) {
        t.match(specifier, /^\.\/[\w-]+\.js$/, `${file} imports ${specifier}: a sibling module`)
        visit(specifier!.slice(2))
      }
    }
    visit('chart.js')
    t.same(
      [...seen].sort(),
      ['chart-parts.js', 'chart-text.js', 'chart.js', 'downsample.js'],
      'the files a page must serve',
    )
    // Evaluated in a fresh realm with none of Node's globals (no process, Buffer, require), as ES modules.
    const script = `
    import vm from 'node:vm'
    import { readFileSync } from 'node:fs'
    const dir = process.env.CHART_DIR
    const context = vm.createContext({})
    const modules = new Map()
    const load = (name) => {
      const source = () => readFileSync(dir + '/' + name, 'utf8')
      if (!modules.has(name)) modules.set(name, new vm.SourceTextModule(source(), { context, identifier: name }))
      return modules.get(name)
    }
    const root = load('chart.js')
    await root.link((specifier) => load(specifier.slice(2)))
    await root.evaluate()
    const { lineChart, barChart, downsample } = root.namespace
    const line = lineChart({ title: 'Live', xLabel: 'step', yLabel: 'loss', xMax: 1000, logY: true,
      series: [{ label: 'loss', points: [[1, 3], [2, 2.5], [3, 2.2]],
                 spread: [[1, 2.9, 3.1], [2, 2.4, 2.6], [3, 2.1, 2.3]] },
               { label: 'eval', points: [[2, 2.6]], markers: true, color: '#000' }] })
    const groups = [{ label: 'g', values: [1], errors: [0.1] }]
    const bars = barChart({ title: 'b', yLabel: 'y', legend: ['x'], groups })
    const kept = downsample([[0, 1], [1, 5], [2, 0], [3, 1]], 3).length
    const exports = Object.keys(root.namespace).sort()
    console.log(JSON.stringify({ exports, line: line.slice(0, 5), bars: bars.includes('class="whisker"'), kept }))
  `
    const { stdout } = await promisify(execFile)(
      process.execPath,
      ['--experimental-vm-modules', '--no-warnings', '--input-type=module', '-e', script],
      { env: { ...process.env, CHART_DIR: dir } },
    )
    const result = JSON.parse(stdout)
    t.same(result.exports, [
      'COLORS',
      'barChart',
      'downsample',
      'downsampleBand',
      'lineChart',
      'scatterChart',
      'textWidth',
      'tickLabel',
      'wrapText',
    ])
    t.equal(result.line, '<svg ')
    t.equal(result.bars, true)
    t.equal(result.kept, 2)
  },
)
