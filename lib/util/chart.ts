/**
 * SVG charts (line, grouped bar, labelled scatter) for loss curves, the demo, the sweep and bench reports and the
 * board's live curves. Pure and dependency-free on purpose: this file and the two it imports (chart-text.js,
 * chart-parts.js) and downsample.js run in Node and, from dist/util/, as ES modules in a browser; PNG rendering,
 * which needs Node, is in svg-png.ts.
 *
 * Layout is computed, not hoped for: text widths are estimated from the font's advance widths, legends go where they
 * fit (beside the plot, else in rows below or above it), titles, axis labels, legend entries and point labels shrink
 * or wrap rather than run past the edge, and the chart grows taller when its plot would get too small. Spread over
 * seeds is drawn where it is given: bands on lines, whiskers on bars, error bars on points.
 */
import {
  ASCENT,
  type Fitted,
  LINE,
  blockHeight,
  blockWidth,
  escapeXml,
  fitText,
  r1,
  textBlock,
  textWidth,
} from './chart-text.js'
import {
  type Frame,
  type LegendEntry,
  MIN_PLOT_HEIGHT,
  PAD,
  SIZE,
  type YAxis,
  axisTicks,
  drawLegend,
  drawXAxis,
  drawYAxis,
  lastTickOverhang,
  layoutLegend,
  paddedRange,
  svgDocument,
  tickLabel,
  titleBlock,
  xAxisLayout,
  yAxisLayout,
} from './chart-parts.js'
import { type Band, type Point, downsample, downsampleBand } from './downsample.js'

export { textWidth, wrapText } from './chart-text.js'
export { tickLabel } from './chart-parts.js'
export { type Band, type Point, downsample, downsampleBand } from './downsample.js'

export interface Series {
  label: string
  points: Point[]
  dashed?: boolean
  /** Any CSS color; default: the palette, by series index. */
  color?: string
  /** Opacity of the line (0 to 1): e.g. a raw curve under its smoothed one. */
  opacity?: number
  /** A dot on every point: for sparse series such as evaluations. */
  markers?: boolean
  /** A translucent band around the line. */
  spread?: Band[]
  /** Instead of spread: one standard deviation per point (in the order of points), drawn as a band of y ± std. */
  std?: number[]
}

export type LegendPlacement = 'auto' | 'right' | 'bottom' | 'none'

export interface LineChartOptions {
  title: string
  xLabel: string
  yLabel: string
  series: Series[]
  /** Default 720. */
  width?: number
  /** Default 420; grows when the plot and its legend would not fit. */
  height?: number
  /** The x axis starts here or at the smallest x, whichever is lower (default: 0). */
  xMin?: number
  /** The x axis reaches at least this far (a live run: its total steps). */
  xMax?: number
  /** Logarithmic y axis; values ≤ 0 are left out. */
  logY?: boolean
  /** 'auto' (default): at the right when it fits there, else in rows below the plot. */
  legend?: LegendPlacement
  /** Points drawn per series, reduced by downsample() beyond it; default twice the plot's width in pixels. */
  maxPoints?: number
}

export interface BarGroup {
  label: string
  values: number[]
  /** ± half-widths of whiskers (e.g. one standard deviation over seeds), in the order of values; 0/NaN: none. */
  errors?: number[]
}

export interface BarChartOptions {
  title: string
  yLabel: string
  /** One name per bar within a group. */
  legend: string[]
  groups: BarGroup[]
  width?: number
  height?: number
  /** Printed above each bar (above its whisker). */
  format?: (value: number) => string
  /** One CSS color per bar within a group; default: the palette. */
  colors?: string[]
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

/** The palette: a series or bar without a color of its own takes the next one. */
export const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#17becf', '#7f7f7f']

/** A series' band, from spread or from std. */
function bandOf(s: Series): Band[] {
  if (s.spread) return s.spread
  if (!s.std) return []
  return s.points.map((p, i) => [p[0], p[1] - (s.std![i] ?? NaN), p[1] + (s.std![i] ?? NaN)])
}

const pathPoint = (k: number, x: number, y: number) => `${k ? 'L' : 'M'}${r1(x)},${r1(y)}`
const strokeStyle = (dashed?: boolean, opacity?: number) =>
  `${dashed ? ' stroke-dasharray="6 4"' : ''}${opacity !== undefined ? ` stroke-opacity="${opacity}"` : ''}`
const hLine = (x1: number, x2: number, y: number, attrs: string) =>
  `<line x1="${r1(x1)}" x2="${r1(x2)}" y1="${r1(y)}" y2="${r1(y)}" ${attrs}/>`
const vLine = (x: number, y1: number, y2: number, attrs: string) =>
  `<line x1="${r1(x)}" x2="${r1(x)}" y1="${r1(y1)}" y2="${r1(y2)}" ${attrs}/>`

/** Lines by step (loss curves), with optional bands (spread over seeds) and dots (sparse evaluations). */
export function lineChart(o: LineChartOptions): string {
  const width = o.width ?? 720
  let height = o.height ?? 420
  const log = o.logY ?? false
  const usable = (y: number) => Number.isFinite(y) && (!log || y > 0)
  const colorOf = (s: Series, i: number) => s.color ?? COLORS[i % COLORS.length]!
  // Loops, not Math.min(...): a 100,000-step run would overflow the argument list.
  let [xLo, xHi, yLo, yHi] = [Infinity, -Infinity, Infinity, -Infinity]
  const see = (x: number, ...ys: number[]) => {
    if (!Number.isFinite(x)) return
    ;[xLo, xHi] = [Math.min(xLo, x), Math.max(xHi, x)]
    for (const y of ys) if (usable(y)) [yLo, yHi] = [Math.min(yLo, y), Math.max(yHi, y)]
  }
  for (const s of o.series) {
    for (const [x, y] of s.points) see(x, y)
    for (const [x, lo, hi] of bandOf(s)) see(x, lo, hi)
  }
  const x0 = Number.isFinite(xLo) ? Math.min(o.xMin ?? Math.min(0, xLo), xLo) : (o.xMin ?? 0)
  let x1 = Math.max(xHi, o.xMax ?? -Infinity)
  if (!(x1 > x0)) x1 = x0 + 1
  const [y0, y1] = paddedRange(yLo, yHi, log, 0.05)
  const axis: YAxis = { lo: y0, hi: y1, log, label: o.yLabel }
  // Steps are whole numbers: no tick at step 0.5.
  const integerX = [x0, x1, ...o.series.flatMap((s) => s.points.slice(0, 50).map((p) => p[0]))].every(Number.isInteger)

  const title = titleBlock(o.title, width)
  const top = title.bottom + 12
  const entries: LegendEntry[] = o.series
    .map((s, i) => {
      const [color, band, marker] = [colorOf(s, i), bandOf(s).length > 0, s.markers]
      return { label: s.label, color, swatch: 'line' as const, dashed: s.dashed, marker, band, opacity: s.opacity }
    })
    .filter((e) => e.label !== '')
  const mode = entries.length === 0 ? 'none' : (o.legend ?? 'auto')
  // Beside the plot only while every entry fits on one line in 30% of the width (40% when asked for, wrapping).
  const beside = layoutLegend(entries, width * (mode === 'right' ? 0.4 : 0.3), false)
  const below = layoutLegend(entries, width - 2 * PAD, true)
  let atRight = mode === 'right' || (mode === 'auto' && beside.items.every((i) => i.text.lines.length === 1))

  const layout = (plotGuess: number) => {
    const y = yAxisLayout(axis, plotGuess)
    let right = Math.max(PAD, atRight ? beside.width + 24 + PAD : 0)
    let ticks = axisTicks(x0, x1, width - y.left - right, false, true, integerX)
    right = Math.max(right, PAD + lastTickOverhang(ticks))
    const plotWidth = width - y.left - right
    ticks = axisTicks(x0, x1, plotWidth, false, true, integerX)
    const x = xAxisLayout(o.xLabel, plotWidth)
    const legendBelow = mode !== 'none' && !atRight ? below.height + 14 : 0
    return { y, x, xTicks: ticks, plotWidth, plotHeight: height - top - x.height - legendBelow - PAD }
  }
  let l = layout(height - top - 90)
  if (atRight && mode === 'auto' && beside.height > l.plotHeight) {
    atRight = false
    l = layout(height - top - 90)
  }
  if (l.plotHeight < MIN_PLOT_HEIGHT) height += MIN_PLOT_HEIGHT - l.plotHeight
  l = layout(Math.max(MIN_PLOT_HEIGHT, l.plotHeight))
  const f: Frame = { left: l.y.left, top, width: l.plotWidth, height: l.plotHeight }

  const px = (x: number) => f.left + ((x - x0) / (x1 - x0)) * f.width
  const py = (y: number) => f.top + f.height - (((log ? Math.log10(y) : y) - y0) / (y1 - y0)) * f.height
  // A band's lower edge at or below zero on a log axis runs along the axis' bottom.
  const pyBand = (y: number) => (log && !(y > 0) ? f.top + f.height : py(y))
  const parts = [...title.parts, ...drawYAxis(f, l.y, py), ...drawXAxis(f, l.xTicks, l.x.label, px)]
  const maxPoints = o.maxPoints ?? Math.max(200, 2 * Math.ceil(f.width))
  const [bands, lines, dots]: string[][] = [[], [], []]
  o.series.forEach((s, i) => {
    const color = escapeXml(colorOf(s, i))
    const band = downsampleBand(bandOf(s), maxPoints).filter((b) => Number.isFinite(b[0] + b[1]) && usable(b[2]))
    if (band.length === 1) {
      // A band of one slice (one logged step): a translucent bar from lo to hi.
      const [x, lo, hi] = band[0]!
      const d = `M${r1(px(x))},${r1(pyBand(lo))} V${r1(py(hi))}`
      bands.push(`<path class="band" d="${d}" stroke="${color}" stroke-opacity="0.35" stroke-width="7" fill="none"/>`)
    } else if (band.length > 1) {
      const upper = band.map((b, k) => pathPoint(k, px(b[0]), py(b[2])))
      const lower = band.reverse().map((b) => pathPoint(1, px(b[0]), pyBand(b[1])))
      const d = `${[...upper, ...lower].join(' ')} Z`
      bands.push(`<path class="band" d="${d}" fill="${color}" fill-opacity="0.2" stroke="none"/>`)
    }
    // Non-finite values (a diverged loss) break the line rather than being bridged.
    const segments: Point[][] = [[]]
    for (const p of downsample(s.points, maxPoints)) {
      if (usable(p[1]) && Number.isFinite(p[0])) segments[segments.length - 1]!.push(p)
      else if (segments[segments.length - 1]!.length > 0) segments.push([])
    }
    const d = segments
      .filter((g) => g.length > 1)
      .map((g) => g.map((p, k) => pathPoint(k, px(p[0]), py(p[1]))).join(' '))
      .join(' ')
    const style = `stroke="${color}" stroke-width="2"${strokeStyle(s.dashed, s.opacity)}`
    if (d) lines.push(`<path class="line" d="${d}" fill="none" ${style}/>`)
    for (const p of s.markers ? segments.flat() : segments.filter((g) => g.length === 1).flat()) {
      dots.push(`<circle class="marker" cx="${r1(px(p[0]))}" cy="${r1(py(p[1]))}" r="3.5" fill="${color}"/>`)
    }
  })
  parts.push(...bands, ...lines, ...dots)
  parts.push(hLine(f.left, f.left + f.width, f.top + f.height, 'stroke="black"'))
  parts.push(vLine(f.left, f.top, f.top + f.height, 'stroke="black"'))
  if (mode !== 'none' && atRight) parts.push(drawLegend(beside, f.left + f.width + 24, f.top))
  else if (mode !== 'none') parts.push(drawLegend(below, (width - below.width) / 2, height - PAD - below.height))
  return svgDocument(width, height, parts)
}

/** Bars in groups (one bar per legend entry in each group), values printed above them, optional ± whiskers. */
export function barChart(o: BarChartOptions): string {
  const width = o.width ?? 720
  let height = o.height ?? 420
  const format = o.format ?? tickLabel
  const colorOf = (i: number) => o.colors?.[i] ?? COLORS[i % COLORS.length]!
  const errorOf = (g: BarGroup, i: number) => {
    const e = g.errors?.[i]
    return e !== undefined && Number.isFinite(e) && e > 0 ? e : 0
  }
  const bars = o.groups
    .flatMap((g) => g.values.map((v, i) => ({ v, e: errorOf(g, i) })))
    .filter((b) => Number.isFinite(b.v))
  // The value axis spans the bars, their whiskers and zero; the value labels get room of their own above (below).
  let hiData = Math.max(0, ...bars.map((b) => b.v + b.e))
  const loData = Math.min(0, ...bars.map((b) => b.v - b.e))
  if (hiData === loData) hiData = loData + 1
  const negative = bars.some((b) => b.v < 0)

  const title = titleBlock(o.title, width)
  const entries = o.legend.map((label, i) => ({ label, color: colorOf(i), swatch: 'box' as const }))
  const legend = layoutLegend(entries, width - 2 * PAD, true)
  const top = title.bottom + 12 + (o.legend.length > 0 ? legend.height + 12 : 0)
  const barsPerGroup = Math.max(1, ...o.groups.map((g) => g.values.length), o.legend.length)
  const axis: YAxis = { lo: loData, hi: hiData, log: false, label: o.yLabel }

  const layout = (innerGuess: number) => {
    const y = yAxisLayout(axis, innerGuess)
    const plotWidth = width - y.left - PAD - 6
    const groupWidth = plotWidth / Math.max(1, o.groups.length)
    const barWidth = (groupWidth * 0.8) / barsPerGroup
    // Group names under their groups; when one would need more than three lines there, all of them turn upright.
    let labels = o.groups.map((g) => fitText(g.label, groupWidth - 6, SIZE.label - 1, 10, false, 3))
    const labelsUpright = labels.some((f) => f.lines.length > 3)
    if (labelsUpright) {
      const lines = Math.max(1, Math.floor((groupWidth - 4) / (LINE * 10)))
      labels = o.groups.map((g) => fitText(g.label, height * 0.3, SIZE.label - 1, 10, false, lines))
    }
    const across = (f: Fitted) => (labelsUpright ? blockWidth(f) : blockHeight(f.lines.length, f.size))
    const labelHeight = Math.max(0, ...labels.map(across))
    // Value labels sit above their bars; too wide for a bar, they shrink, and turn upright as a last resort.
    const widest = (size: number) => Math.max(0, ...bars.map((b) => textWidth(format(b.v), size)))
    let valueSize = SIZE.value
    while (valueSize > 9 && widest(valueSize) > barWidth - 1) valueSize--
    const upright = widest(valueSize) > barWidth - 1
    const valueRoom = (upright ? widest(valueSize) : blockHeight(1, valueSize)) + 6
    const plotHeight = height - top - 8 - labelHeight - PAD
    const inner = plotHeight - valueRoom * (negative ? 2 : 1)
    const values = { valueSize, upright, valueRoom }
    return { y, plotWidth, groupWidth, barWidth, labels, labelsUpright, ...values, plotHeight, inner }
  }
  let l = layout(height - top - 80)
  if (l.inner < MIN_PLOT_HEIGHT) height += MIN_PLOT_HEIGHT - l.inner
  l = layout(Math.max(MIN_PLOT_HEIGHT, l.inner))
  l = layout(l.inner)
  const f: Frame = { left: l.y.left, top, width: l.plotWidth, height: l.plotHeight }
  const py = (v: number) => f.top + l.valueRoom + ((hiData - v) / (hiData - loData)) * l.inner
  const parts = [...title.parts, ...drawYAxis(f, l.y, py)]
  const whiskers: string[] = []
  o.groups.forEach((g, gi) => {
    const gx = f.left + gi * l.groupWidth + l.groupWidth * 0.1
    g.values.forEach((v, bi) => {
      if (!Number.isFinite(v)) return
      const x = gx + bi * l.barWidth
      const cx = x + (l.barWidth - 2) / 2
      const [yTop, yBottom] = [Math.min(py(v), py(0)), Math.max(py(v), py(0))]
      const place = `x="${r1(x)}" y="${r1(yTop)}" width="${r1(l.barWidth - 2)}" height="${r1(yBottom - yTop)}"`
      parts.push(`<rect class="bar" ${place} fill="${escapeXml(colorOf(bi))}"/>`)
      const e = errorOf(g, bi)
      if (e > 0) {
        const cap = Math.min(6, (l.barWidth - 2) / 4)
        const [hi, lo, a, b] = [r1(py(v + e)), r1(py(v - e)), r1(cx - cap), r1(cx + cap)]
        const d = `M${r1(cx)},${lo} V${hi} M${a},${hi} H${b} M${a},${lo} H${b}`
        whiskers.push(`<path class="whisker" d="${d}" stroke="#222" stroke-width="1.5" fill="none"/>`)
      }
      const value: Fitted = { lines: [format(v)], size: l.valueSize }
      const reach = v >= 0 ? py(v + e) : py(v - e)
      const mid = cx - (ASCENT - 0.35) * l.valueSize
      if (l.upright) {
        const style = { anchor: v >= 0 ? ('start' as const) : ('end' as const), rotated: true, cls: 'value' }
        parts.push(...textBlock(value, v >= 0 ? reach - 4 : reach + 4, mid, style))
      } else {
        const valueTop = v >= 0 ? reach - 4 - blockHeight(1, l.valueSize) : reach + 4
        parts.push(...textBlock(value, cx, valueTop, { anchor: 'middle', cls: 'value' }))
      }
    })
    const labelX = f.left + (gi + 0.5) * l.groupWidth
    const label = l.labels[gi]!
    if (l.labelsUpright) {
      const left = labelX - blockHeight(label.lines.length, label.size) / 2
      parts.push(...textBlock(label, f.top + f.height + 8, left, { anchor: 'end', rotated: true, cls: 'group-label' }))
    } else parts.push(...textBlock(label, labelX, f.top + f.height + 8, { anchor: 'middle', cls: 'group-label' }))
  })
  parts.push(...whiskers, hLine(f.left, f.left + f.width, py(0), 'stroke="black"'))
  if (o.legend.length > 0) parts.push(drawLegend(legend, (width - legend.width) / 2, title.bottom + 12))
  return svgDocument(width, height, parts)
}

interface Box {
  x: number
  y: number
  w: number
  h: number
}

const overlap = (p: Box, q: Box) =>
  Math.max(0, Math.min(p.x + p.w, q.x + q.w) - Math.max(p.x, q.x)) *
  Math.max(0, Math.min(p.y + p.h, q.y + q.h) - Math.max(p.y, q.y))

/** Labelled points with error bars in x and y (the sweep's forgetting against learning). */
export function scatterChart(o: ScatterChartOptions): string {
  const width = o.width ?? 720
  let height = o.height ?? 460
  const finite = o.points.filter((p) => Number.isFinite(p.x) && Number.isFinite(p.y))
  const xs = finite.flatMap((p) => [p.x - (p.xError ?? 0), p.x + (p.xError ?? 0)])
  const ys = finite.flatMap((p) => [p.y - (p.yError ?? 0), p.y + (p.yError ?? 0)])
  const [x0, x1] = paddedRange(Math.min(0, ...xs), Math.max(0, ...xs), false, 0.12)
  const [y0, y1] = paddedRange(Math.min(0, ...ys), Math.max(0, ...ys), false, 0.12)
  const axis: YAxis = { lo: y0, hi: y1, log: false, label: o.yLabel }
  const title = titleBlock(o.title, width)
  const top = title.bottom + 12
  const layout = (plotGuess: number) => {
    const y = yAxisLayout(axis, plotGuess)
    const right = PAD + lastTickOverhang(axisTicks(x0, x1, width - y.left - PAD, false, true))
    const plotWidth = width - y.left - right
    const x = xAxisLayout(o.xLabel, plotWidth)
    const xTicks = axisTicks(x0, x1, plotWidth, false, true)
    return { y, x, xTicks, plotWidth, plotHeight: height - top - x.height - PAD }
  }
  let l = layout(height - top - 70)
  if (l.plotHeight < MIN_PLOT_HEIGHT) height += MIN_PLOT_HEIGHT - l.plotHeight
  l = layout(Math.max(MIN_PLOT_HEIGHT, l.plotHeight))
  const f: Frame = { left: l.y.left, top, width: l.plotWidth, height: l.plotHeight }
  const [right, bottom] = [f.left + f.width, f.top + f.height]
  const px = (x: number) => f.left + ((x - x0) / (x1 - x0)) * f.width
  const py = (y: number) => bottom - ((y - y0) / (y1 - y0)) * f.height
  const parts = [...title.parts, ...drawYAxis(f, l.y, py), ...drawXAxis(f, l.xTicks, l.x.label, px)]
  for (const t of l.xTicks) parts.push(vLine(px(t), f.top, bottom, 'stroke="#f0f0f0"'))
  // The zero lines: no learning, no forgetting.
  parts.push(vLine(px(0), f.top, bottom, 'stroke="#999" stroke-dasharray="4 3"'))
  parts.push(hLine(f.left, right, py(0), 'stroke="#999" stroke-dasharray="4 3"'))
  const frame = `x="${r1(f.left)}" y="${r1(f.top)}" width="${r1(f.width)}" height="${r1(f.height)}"`
  parts.push(`<rect ${frame} fill="none" stroke="black"/>`)
  // What a label must not cover: the points and their error bars.
  const taken: Box[] = []
  finite.forEach((p, i) => {
    const color = escapeXml(COLORS[i % COLORS.length]!)
    const [cx, cy] = [px(p.x), py(p.y)]
    taken.push({ x: cx - 5, y: cy - 5, w: 10, h: 10 })
    if (p.xError) {
      const [a, b] = [px(p.x - p.xError), px(p.x + p.xError)]
      const d = `M${r1(a)},${r1(cy)} H${r1(b)} M${r1(a)},${r1(cy - 4)} v8 M${r1(b)},${r1(cy - 4)} v8`
      parts.push(`<path class="whisker" d="${d}" stroke="${color}" stroke-width="1.5" fill="none"/>`)
      taken.push({ x: a, y: cy - 4, w: b - a, h: 8 })
    }
    if (p.yError) {
      const [a, b] = [py(p.y - p.yError), py(p.y + p.yError)]
      const d = `M${r1(cx)},${r1(a)} V${r1(b)} M${r1(cx - 4)},${r1(a)} h8 M${r1(cx - 4)},${r1(b)} h8`
      parts.push(`<path class="whisker" d="${d}" stroke="${color}" stroke-width="1.5" fill="none"/>`)
      taken.push({ x: cx - 4, y: b, w: 8, h: a - b })
    }
    parts.push(`<circle class="marker" cx="${r1(cx)}" cy="${r1(cy)}" r="4.5" fill="${color}"/>`)
  })
  // Each label goes to the spot around its point, kept inside the frame, that covers least of the points, error bars
  // and labels placed so far (the first such spot: right and above, when it is clear).
  finite.forEach((p, i) => {
    const text = fitText(p.label, f.width / 2 - 12, SIZE.point, 10)
    const [w, h] = [blockWidth(text), blockHeight(text.lines.length, text.size)]
    const [cx, cy] = [px(p.x), py(p.y)]
    const inside = (x: number, y: number): Box => ({
      x: Math.min(Math.max(x, f.left + 2), right - 2 - w),
      y: Math.min(Math.max(y, f.top + 2), bottom - 2 - h),
      w,
      h,
    })
    const spots = [
      inside(cx + 8, cy - 6 - h),
      inside(cx + 8, cy + 6),
      inside(cx - 8 - w, cy - 6 - h),
      inside(cx - 8 - w, cy + 6),
      inside(cx - w / 2, cy - 10 - h),
      inside(cx - w / 2, cy + 10),
    ]
    const cost = (s: Box) => taken.reduce((sum, t) => sum + overlap(s, t), 0)
    const spot = spots.reduce((best, s) => (cost(s) < cost(best) ? s : best))
    taken.push(spot)
    parts.push(...textBlock(text, spot.x, spot.y, { fill: COLORS[i % COLORS.length], cls: 'point-label' }))
  })
  return svgDocument(width, height, parts)
}
