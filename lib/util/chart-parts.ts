/**
 * The parts every chart of chart.ts shares: axes (ticks, tick labels, axis labels), legends, the title and the SVG
 * document. Each part is laid out first (how much room it takes) and drawn second, so that a chart can find room
 * for everything before it draws anything. Pure, like chart.ts, so that it loads in a browser too.
 */
import {
  ASCENT,
  FONT,
  type Fitted,
  blockHeight,
  blockWidth,
  escapeXml,
  fitText,
  r1,
  textBlock,
  textWidth,
  wrapText,
} from './chart-text.js'

export const SIZE = { title: 16, label: 13, tick: 12, legend: 12, value: 11, point: 12 }
/** Blank margin along the picture's edges. */
export const PAD = 10
/** Below this the plot would say little: the chart grows taller instead. */
export const MIN_PLOT_HEIGHT = 140

/** 1, 2 or 5 times a power of ten: readable axis steps, about `count` of them, none finer than minStep. */
function niceTicks(min: number, max: number, count: number, minStep = 0): number[] {
  if (!(max > min)) return [min]
  const raw = Math.max(minStep, (max - min) / Math.max(1, count))
  const power = 10 ** Math.floor(Math.log10(raw))
  const step = [1, 2, 5, 10].map((m) => m * power).find((s) => s >= raw * (1 - 1e-9)) ?? raw
  const ticks: number[] = []
  for (let v = Math.ceil(min / step - 1e-9) * step; v <= max + step * 1e-9; v += step) {
    ticks.push(Number(v.toPrecision(12)))
  }
  return ticks
}

/** Ticks of a log axis (log10 bounds): decades, else 1-2-5, else 1..9 per decade; within a decade, linear ones. */
function logTicks(lo: number, hi: number, count: number): number[] {
  if (hi - lo < 1) return niceTicks(10 ** lo, 10 ** hi, count).filter((v) => v > 0)
  const sets = [[1], [1, 2, 5], [1, 2, 3, 4, 5, 6, 7, 8, 9]].map((mantissas) => {
    const ticks: number[] = []
    for (let d = Math.floor(lo); d <= Math.ceil(hi); d++) {
      for (const m of mantissas) {
        const v = Number((m * 10 ** d).toPrecision(12))
        if (Math.log10(v) >= lo - 1e-9 && Math.log10(v) <= hi + 1e-9) ticks.push(v)
      }
    }
    return ticks
  })
  const fitting = sets.filter((s) => s.length >= 2 && s.length <= count + 1)
  return fitting.length > 0 ? fitting[fitting.length - 1]! : sets[0]!
}

/** Short tick text: 20k, 1.5M, 0.25, 5.0e-3. A tick that float steps put a hair off zero (6.9e-18) is 0. */
export function tickLabel(v: number): string {
  const a = Math.abs(v)
  if (a < 1e-12) return '0'
  for (const [div, suffix] of [
    [1e9, 'G'],
    [1e6, 'M'],
    [1e4, 'k'],
  ] as const) {
    if (a >= div) return `${Number((v / (suffix === 'k' ? 1e3 : div)).toPrecision(3))}${suffix}`
  }
  return a < 1e-2 ? v.toExponential(1) : String(Number(v.toPrecision(4)))
}

/**
 * Ticks for an axis `length` pixels long, as many as fit with their labels apart (x: side by side; y: stacked);
 * whole numbers only when `integer` (steps).
 */
export function axisTicks(lo: number, hi: number, length: number, log: boolean, horizontal: boolean, integer = false) {
  for (let count = Math.max(2, Math.floor(length / (horizontal ? 70 : 38))); ; count--) {
    const ticks = log ? logTicks(lo, hi, count) : niceTicks(lo, hi, count, integer ? 1 : 0)
    if (count <= 2) return ticks
    const span = Math.max(...ticks.map((t) => textWidth(tickLabel(t), SIZE.tick))) + 14
    const position = (t: number) => (((log ? Math.log10(t) : t) - lo) / (hi - lo)) * length
    const gaps = ticks.slice(1).map((t, i) => position(t) - position(ticks[i]!))
    if (Math.min(...gaps) >= (horizontal ? span : SIZE.tick * 1.8)) return ticks
  }
}

/** Bounds of values with a fraction of padding (log10 bounds on a log axis); a flat or empty range gets room. */
export function paddedRange(lo: number, hi: number, log: boolean, pad: number): [number, number] {
  if (!(lo <= hi)) return log ? [-1, 1] : [0, 1]
  if (log) [lo, hi] = [Math.log10(lo), Math.log10(hi)]
  if (hi === lo) return log ? [lo - 0.3, hi + 0.3] : [lo - 1, hi + 1]
  const room = (hi - lo) * pad
  return [lo - room, hi + room]
}

export interface LegendEntry {
  label: string
  color: string
  swatch: 'line' | 'box'
  dashed?: boolean
  marker?: boolean
  band?: boolean
  opacity?: number
}

export interface LegendLayout {
  items: { entry: LegendEntry; x: number; y: number; text: Fitted }[]
  width: number
  height: number
}

const SWATCH = 26
const SWATCH_GAP = 6

/** Entries in rows at most maxWidth wide (flow), or one under another; an entry too wide wraps its text. */
export function layoutLegend(entries: LegendEntry[], maxWidth: number, flow: boolean): LegendLayout {
  const layout: LegendLayout = { items: [], width: 0, height: 0 }
  let [x, y, rowHeight] = [0, 0, 0]
  for (const entry of entries) {
    const text = { lines: wrapText(entry.label, maxWidth - SWATCH - SWATCH_GAP, SIZE.legend), size: SIZE.legend }
    const w = SWATCH + SWATCH_GAP + blockWidth(text)
    const h = blockHeight(text.lines.length, text.size)
    if (x > 0 && (!flow || x + w > maxWidth)) [x, y, rowHeight] = [0, y + rowHeight + 6, 0]
    layout.items.push({ entry, x, y, text })
    layout.width = Math.max(layout.width, x + w)
    layout.height = Math.max(layout.height, y + h)
    rowHeight = Math.max(rowHeight, h)
    x += w + 20
  }
  return layout
}

export function drawLegend(layout: LegendLayout, left: number, top: number): string {
  const parts = layout.items.map(({ entry, x, y, text }) => {
    const [x0, y0] = [left + x, top + y]
    const mid = r1(y0 + (ASCENT - 0.32) * SIZE.legend)
    const box = r1(y0 + (ASCENT - 0.32) * SIZE.legend - 6)
    const color = escapeXml(entry.color)
    const swatch: string[] = []
    if (entry.swatch === 'box') {
      swatch.push(`<rect x="${r1(x0 + 7)}" y="${box}" width="12" height="12" fill="${color}"/>`)
    } else {
      if (entry.band) {
        swatch.push(`<rect x="${r1(x0)}" y="${box}" width="${SWATCH}" height="12" fill="${color}" fill-opacity="0.2"/>`)
      }
      const dash = entry.dashed ? ' stroke-dasharray="6 4"' : ''
      const opacity = entry.opacity !== undefined ? ` stroke-opacity="${entry.opacity}"` : ''
      const ends = `x1="${r1(x0)}" x2="${r1(x0 + SWATCH)}" y1="${mid}" y2="${mid}"`
      swatch.push(`<line ${ends} stroke="${color}" stroke-width="2"${dash}${opacity}/>`)
      if (entry.marker) swatch.push(`<circle cx="${r1(x0 + SWATCH / 2)}" cy="${mid}" r="3.5" fill="${color}"/>`)
    }
    const label = textBlock(text, x0 + SWATCH + SWATCH_GAP, y0)
    return `<g class="legend-item">${[...swatch, ...label].join('')}</g>`
  })
  return `<g class="legend">\n${parts.join('\n')}\n</g>`
}

/** The title, fitted to the width (smaller, then wrapped); its elements and the y below it. */
export function titleBlock(title: string, width: number): { parts: string[]; bottom: number } {
  const fitted = fitText(title, width - 2 * PAD, SIZE.title, 12, true, 3)
  const parts = textBlock(fitted, width / 2, PAD, { anchor: 'middle', bold: true, cls: 'title' })
  return { parts, bottom: PAD + blockHeight(fitted.lines.length, fitted.size) }
}

export function svgDocument(width: number, height: number, parts: string[]): string {
  const [w, h] = [Math.ceil(width), Math.ceil(height)]
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${w}" height="${h}" viewBox="0 0 ${w} ${h}" font-family="${FONT}">`,
    `<rect width="${w}" height="${h}" fill="white"/>`,
    ...parts,
    '</svg>',
  ].join('\n')
}

/** The plot area, in pixels. */
export interface Frame {
  left: number
  top: number
  width: number
  height: number
}

/** A y axis: its bounds (log10 bounds when log) and its label. */
export interface YAxis {
  lo: number
  hi: number
  log: boolean
  label: string
}

export interface YAxisLayout {
  ticks: number[]
  label: Fitted
  /** The plot's left edge: room for the rotated label and the widest tick label. */
  left: number
}

/** Ticks and left margin for a y axis `length` pixels long; the label wraps to that length. */
export function yAxisLayout(axis: YAxis, length: number): YAxisLayout {
  const ticks = axisTicks(axis.lo, axis.hi, length, axis.log, false)
  const label = fitText(axis.label, Math.max(60, length), SIZE.label, 11)
  const tickWidth = Math.max(...ticks.map((t) => textWidth(tickLabel(t), SIZE.tick)))
  return { ticks, label, left: PAD + blockHeight(label.lines.length, label.size) + 8 + tickWidth + 8 }
}

/** Grid lines, tick labels and the rotated label of a y axis. */
export function drawYAxis(f: Frame, y: YAxisLayout, py: (value: number) => number): string[] {
  const parts: string[] = []
  for (const t of y.ticks) {
    const at = py(t)
    parts.push(`<line x1="${r1(f.left)}" x2="${r1(f.left + f.width)}" y1="${r1(at)}" y2="${r1(at)}" stroke="#e5e5e5"/>`)
    const tick = { lines: [tickLabel(t)], size: SIZE.tick }
    parts.push(...textBlock(tick, f.left - 8, at - (ASCENT - 0.35) * SIZE.tick, { anchor: 'end', cls: 'tick' }))
  }
  parts.push(...textBlock(y.label, f.top + f.height / 2, PAD, { anchor: 'middle', rotated: true, cls: 'axis-label' }))
  return parts
}

/** Room below a plot for the x tick labels and the x label, fitted to the plot's width. */
export function xAxisLayout(xLabel: string, plotWidth: number): { label: Fitted; height: number } {
  const label = fitText(xLabel, plotWidth, SIZE.label, 11)
  return { label, height: 6 + blockHeight(1, SIZE.tick) + 8 + blockHeight(label.lines.length, label.size) }
}

export function drawXAxis(f: Frame, ticks: number[], label: Fitted, px: (value: number) => number): string[] {
  const parts: string[] = []
  const bottom = f.top + f.height
  for (const t of ticks) {
    const x = r1(px(t))
    parts.push(`<line x1="${x}" x2="${x}" y1="${r1(bottom)}" y2="${r1(bottom + 4)}" stroke="black"/>`)
    const tick = { lines: [tickLabel(t)], size: SIZE.tick }
    parts.push(...textBlock(tick, px(t), bottom + 6, { anchor: 'middle', cls: 'tick' }))
  }
  const labelTop = bottom + 6 + blockHeight(1, SIZE.tick) + 8
  parts.push(...textBlock(label, f.left + f.width / 2, labelTop, { anchor: 'middle', cls: 'axis-label' }))
  return parts
}

/** Half the width of the last x tick label: how far it reaches past the plot's right edge. */
export const lastTickOverhang = (ticks: number[]) => textWidth(tickLabel(ticks[ticks.length - 1] ?? 0), SIZE.tick) / 2
