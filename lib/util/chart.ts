/**
 * Small SVG charts (line and grouped bar) for loss curves, the demo and benchmark reports, and their PNG
 * rendering through resvg. Self-contained SVG: it opens in any browser and renders the same everywhere.
 */
import { createRequire } from 'node:module'

export interface Series {
  label: string
  points: [number, number][]
  dashed?: boolean
}

export interface LineChartOptions {
  title: string
  xLabel: string
  yLabel: string
  series: Series[]
  width?: number
  height?: number
}

export interface BarGroup {
  label: string
  values: number[]
}

export interface BarChartOptions {
  title: string
  yLabel: string
  /** One name per bar within a group. */
  legend: string[]
  groups: BarGroup[]
  width?: number
  height?: number
  /** Printed above each bar. */
  format?: (value: number) => string
}

const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#17becf', '#7f7f7f']
const FONT = 'DejaVu Sans, Helvetica, Arial, sans-serif'

const escape = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;')

/** 1, 2 or 5 times a power of ten: readable axis steps. */
function niceTicks(min: number, max: number, count = 5): number[] {
  if (!(max > min)) return [min]
  const raw = (max - min) / count
  const power = 10 ** Math.floor(Math.log10(raw))
  const step = [1, 2, 5, 10].map((m) => m * power).find((s) => s >= raw) ?? raw
  const ticks: number[] = []
  for (let v = Math.ceil(min / step) * step; v <= max + step * 1e-9; v += step) ticks.push(Number(v.toPrecision(12)))
  return ticks
}

// A tick that float steps put a hair off zero (6.9e-18) is zero.
const tickLabel = (v: number) => (Math.abs(v) < 1e-12 ? '0' : Math.abs(v) >= 1e4 || Math.abs(v) < 1e-2 ? v.toExponential(1) : String(Number(v.toPrecision(4))))

function frame(width: number, height: number, title: string, body: string): string {
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="${FONT}">`,
    `<rect width="${width}" height="${height}" fill="white"/>`,
    `<text x="${width / 2}" y="24" text-anchor="middle" font-size="16" font-weight="bold">${escape(title)}</text>`,
    body,
    '</svg>',
  ].join('\n')
}

export function lineChart(o: LineChartOptions): string {
  const width = o.width ?? 720
  const height = o.height ?? 420
  const m = { left: 70, right: 170, top: 40, bottom: 50 }
  const all = o.series.flatMap((s) => s.points)
  const xs = all.map((p) => p[0])
  const ys = all.map((p) => p[1]).filter(Number.isFinite)
  const [x0, x1] = [Math.min(...xs, 0), Math.max(...xs, 1)]
  let [y0, y1] = [Math.min(...ys), Math.max(...ys)]
  if (!(y1 > y0)) [y0, y1] = [y0 - 1, y1 + 1]
  const pad = (y1 - y0) * 0.05
  y0 -= pad
  y1 += pad
  const px = (x: number) => m.left + ((x - x0) / (x1 - x0 || 1)) * (width - m.left - m.right)
  const py = (y: number) => height - m.bottom - ((y - y0) / (y1 - y0)) * (height - m.top - m.bottom)
  const parts: string[] = []
  for (const t of niceTicks(y0, y1)) {
    parts.push(`<line x1="${m.left}" x2="${width - m.right}" y1="${py(t)}" y2="${py(t)}" stroke="#e5e5e5"/>`)
    parts.push(`<text x="${m.left - 6}" y="${py(t) + 4}" text-anchor="end" font-size="11">${tickLabel(t)}</text>`)
  }
  for (const t of niceTicks(x0, x1)) {
    parts.push(`<text x="${px(t)}" y="${height - m.bottom + 16}" text-anchor="middle" font-size="11">${tickLabel(t)}</text>`)
  }
  parts.push(`<line x1="${m.left}" x2="${width - m.right}" y1="${height - m.bottom}" y2="${height - m.bottom}" stroke="black"/>`)
  parts.push(`<line x1="${m.left}" x2="${m.left}" y1="${m.top}" y2="${height - m.bottom}" stroke="black"/>`)
  parts.push(`<text x="${(m.left + width - m.right) / 2}" y="${height - 12}" text-anchor="middle" font-size="13">${escape(o.xLabel)}</text>`)
  parts.push(`<text transform="translate(18 ${(m.top + height - m.bottom) / 2}) rotate(-90)" text-anchor="middle" font-size="13">${escape(o.yLabel)}</text>`)
  o.series.forEach((s, i) => {
    const color = COLORS[i % COLORS.length]
    const points = s.points.filter((p) => Number.isFinite(p[1]))
    if (points.length === 1) parts.push(`<circle cx="${px(points[0]![0])}" cy="${py(points[0]![1])}" r="3" fill="${color}"/>`)
    else if (points.length > 1) {
      const d = points.map((p, k) => `${k ? 'L' : 'M'}${px(p[0]).toFixed(1)},${py(p[1]).toFixed(1)}`).join(' ')
      parts.push(`<path d="${d}" fill="none" stroke="${color}" stroke-width="2"${s.dashed ? ' stroke-dasharray="6 4"' : ''}/>`)
    }
    const ly = m.top + 10 + i * 20
    parts.push(`<line x1="${width - m.right + 12}" x2="${width - m.right + 36}" y1="${ly}" y2="${ly}" stroke="${color}" stroke-width="2"${s.dashed ? ' stroke-dasharray="6 4"' : ''}/>`)
    parts.push(`<text x="${width - m.right + 42}" y="${ly + 4}" font-size="12">${escape(s.label)}</text>`)
  })
  return frame(width, height, o.title, parts.join('\n'))
}

export function barChart(o: BarChartOptions): string {
  const width = o.width ?? 720
  const height = o.height ?? 420
  const m = { left: 70, right: 20, top: 60, bottom: 50 }
  const format = o.format ?? tickLabel
  const values = o.groups.flatMap((g) => g.values).filter(Number.isFinite)
  const y1 = Math.max(...values, 0) * 1.12 || 1
  // Negative values (a loss that rose where it should fall) hang below the zero line.
  const yMin = Math.min(...values, 0) * 1.12
  const py = (y: number) => height - m.bottom - ((y - yMin) / (y1 - yMin)) * (height - m.top - m.bottom)
  const groupWidth = (width - m.left - m.right) / Math.max(1, o.groups.length)
  const barWidth = (groupWidth * 0.8) / Math.max(1, o.legend.length)
  const parts: string[] = []
  for (const t of niceTicks(yMin, y1)) {
    parts.push(`<line x1="${m.left}" x2="${width - m.right}" y1="${py(t)}" y2="${py(t)}" stroke="#e5e5e5"/>`)
    parts.push(`<text x="${m.left - 6}" y="${py(t) + 4}" text-anchor="end" font-size="11">${tickLabel(t)}</text>`)
  }
  o.groups.forEach((g, gi) => {
    const gx = m.left + gi * groupWidth + groupWidth * 0.1
    g.values.forEach((v, bi) => {
      if (!Number.isFinite(v)) return
      const x = gx + bi * barWidth
      parts.push(`<rect x="${x.toFixed(1)}" y="${Math.min(py(v), py(0)).toFixed(1)}" width="${(barWidth - 2).toFixed(1)}" height="${Math.abs(py(0) - py(v)).toFixed(1)}" fill="${COLORS[bi % COLORS.length]}"/>`)
      parts.push(`<text x="${(x + barWidth / 2).toFixed(1)}" y="${(v >= 0 ? py(v) - 4 : py(v) + 12).toFixed(1)}" text-anchor="middle" font-size="10">${escape(format(v))}</text>`)
    })
    parts.push(`<text x="${(gx + groupWidth * 0.4).toFixed(1)}" y="${height - m.bottom + 18}" text-anchor="middle" font-size="12">${escape(g.label)}</text>`)
  })
  parts.push(`<line x1="${m.left}" x2="${width - m.right}" y1="${py(0)}" y2="${py(0)}" stroke="black"/>`)
  parts.push(`<text transform="translate(18 ${(m.top + height - m.bottom) / 2}) rotate(-90)" text-anchor="middle" font-size="13">${escape(o.yLabel)}</text>`)
  let legendX = m.left
  o.legend.forEach((name, i) => {
    const x = legendX
    legendX += 34 + name.length * 7 // about 7 px per character at 12 px
    parts.push(`<rect x="${x}" y="36" width="14" height="14" fill="${COLORS[i % COLORS.length]}"/>`)
    parts.push(`<text x="${x + 20}" y="48" font-size="12">${escape(name)}</text>`)
  })
  return frame(width, height, o.title, parts.join('\n'))
}

const require = createRequire(import.meta.url)

/** Renders an SVG to PNG with resvg; undefined when resvg has no build for this platform. */
export function svgToPng(svg: string): Uint8Array | undefined {
  let Resvg: new (svg: string, options: object) => { render(): { asPng(): Uint8Array } }
  try {
    ;({ Resvg } = require('@resvg/resvg-js') as { Resvg: typeof Resvg })
  } catch {
    return undefined
  }
  return new Resvg(svg, { font: { loadSystemFonts: true, defaultFontFamily: 'DejaVu Sans' }, background: 'white' }).render().asPng()
}

export interface ScatterPoint {
  label: string
  x: number
  y: number
  /** Half-widths of the error bars (e.g. one standard deviation); 0 or absent: none. */
  xError?: number
  yError?: number
}

export interface ScatterChartOptions {
  title: string
  xLabel: string
  yLabel: string
  points: ScatterPoint[]
  width?: number
  height?: number
}

/** Labelled points with error bars in x and y (the sweep's forgetting against learning). */
export function scatterChart(o: ScatterChartOptions): string {
  const width = o.width ?? 720
  const height = o.height ?? 460
  const m = { left: 80, right: 30, top: 40, bottom: 50 }
  const finite = o.points.filter((p) => Number.isFinite(p.x) && Number.isFinite(p.y))
  const xs = finite.flatMap((p) => [p.x - (p.xError ?? 0), p.x + (p.xError ?? 0)])
  const ys = finite.flatMap((p) => [p.y - (p.yError ?? 0), p.y + (p.yError ?? 0)])
  const range = (values: number[]): [number, number] => {
    let [lo, hi] = values.length ? [Math.min(...values, 0), Math.max(...values, 0)] : [0, 1]
    if (!(hi > lo)) [lo, hi] = [lo - 1, hi + 1]
    const pad = (hi - lo) * 0.1
    return [lo - pad, hi + pad]
  }
  const [x0, x1] = range(xs)
  const [y0, y1] = range(ys)
  const px = (x: number) => m.left + ((x - x0) / (x1 - x0)) * (width - m.left - m.right)
  const py = (y: number) => height - m.bottom - ((y - y0) / (y1 - y0)) * (height - m.top - m.bottom)
  const parts: string[] = []
  for (const t of niceTicks(y0, y1)) {
    parts.push(`<line x1="${m.left}" x2="${width - m.right}" y1="${py(t)}" y2="${py(t)}" stroke="#e5e5e5"/>`)
    parts.push(`<text x="${m.left - 6}" y="${py(t) + 4}" text-anchor="end" font-size="11">${tickLabel(t)}</text>`)
  }
  for (const t of niceTicks(x0, x1)) {
    parts.push(`<line x1="${px(t)}" x2="${px(t)}" y1="${m.top}" y2="${height - m.bottom}" stroke="#f0f0f0"/>`)
    parts.push(`<text x="${px(t)}" y="${height - m.bottom + 16}" text-anchor="middle" font-size="11">${tickLabel(t)}</text>`)
  }
  // The zero lines: no learning, no forgetting.
  parts.push(`<line x1="${px(0)}" x2="${px(0)}" y1="${m.top}" y2="${height - m.bottom}" stroke="#999" stroke-dasharray="4 3"/>`)
  parts.push(`<line x1="${m.left}" x2="${width - m.right}" y1="${py(0)}" y2="${py(0)}" stroke="#999" stroke-dasharray="4 3"/>`)
  parts.push(`<rect x="${m.left}" y="${m.top}" width="${width - m.left - m.right}" height="${height - m.top - m.bottom}" fill="none" stroke="black"/>`)
  parts.push(`<text x="${(m.left + width - m.right) / 2}" y="${height - 12}" text-anchor="middle" font-size="13">${escape(o.xLabel)}</text>`)
  parts.push(`<text transform="translate(18 ${(m.top + height - m.bottom) / 2}) rotate(-90)" text-anchor="middle" font-size="13">${escape(o.yLabel)}</text>`)
  finite.forEach((p, i) => {
    const color = COLORS[i % COLORS.length]
    const [cx, cy] = [px(p.x), py(p.y)]
    if (p.xError) parts.push(`<path d="M${px(p.x - p.xError).toFixed(1)},${cy.toFixed(1)} H${px(p.x + p.xError).toFixed(1)} M${px(p.x - p.xError).toFixed(1)},${(cy - 4).toFixed(1)} v8 M${px(p.x + p.xError).toFixed(1)},${(cy - 4).toFixed(1)} v8" stroke="${color}" stroke-width="1.5" fill="none"/>`)
    if (p.yError) parts.push(`<path d="M${cx.toFixed(1)},${py(p.y - p.yError).toFixed(1)} V${py(p.y + p.yError).toFixed(1)} M${(cx - 4).toFixed(1)},${py(p.y - p.yError).toFixed(1)} h8 M${(cx - 4).toFixed(1)},${py(p.y + p.yError).toFixed(1)} h8" stroke="${color}" stroke-width="1.5" fill="none"/>`)
    parts.push(`<circle cx="${cx.toFixed(1)}" cy="${cy.toFixed(1)}" r="4.5" fill="${color}"/>`)
    // Labels alternate above and below their points, so that two close points keep readable names.
    parts.push(`<text x="${(cx + 8).toFixed(1)}" y="${(i % 2 ? cy + 18 : cy - 8).toFixed(1)}" font-size="12" fill="${color}">${escape(p.label)}</text>`)
  })
  return frame(width, height, o.title, parts.join('\n'))
}
