/** DOM building blocks of the board's page: elements, number formats, charts. */
import { type Series, lineChart } from '../../util/chart.js'
import type { Point, RunStatus } from '../wire.js'

export const $ = <T extends HTMLElement = HTMLElement>(id: string): T => document.getElementById(id) as T

/** An element with attributes and children; text children are text nodes, never HTML. */
export function el(
  tag: string,
  attributes: Record<string, string | undefined> = {},
  ...children: (Node | string | null)[]
): HTMLElement {
  const node = document.createElement(tag)
  for (const [key, value] of Object.entries(attributes)) if (value !== undefined) node.setAttribute(key, value)
  for (const child of children) if (child !== null) node.append(child)
  return node
}

/** Shown exactly as logged: the trainer rounds what it writes, the page rounds nothing further. */
export const exact = (value: number | null | undefined): string =>
  value === null || value === undefined ? '–' : String(value)

export function compact(value: number | null | undefined, digits = 3): string {
  if (value === null || value === undefined || !Number.isFinite(value)) return '–'
  if (value !== 0 && (Math.abs(value) < 1e-3 || Math.abs(value) >= 1e6)) return value.toExponential(2)
  return Number(value.toPrecision(digits + 2)).toLocaleString('en-US', { maximumFractionDigits: 6 })
}

export function statusPill(status: RunStatus, reason?: string): HTMLElement {
  return el('span', { class: 'pill', 'data-status': status, title: reason }, status)
}

export function progressBar(fraction: number): HTMLElement {
  const percent = Math.max(0, Math.min(100, fraction * 100)).toFixed(1)
  return el('div', { class: 'bar' }, el('div', { style: `width: ${percent}%` }))
}

export function card(id: string, label: string, value: string, raw?: number | null, hint?: string): HTMLElement {
  return el(
    'div',
    { class: 'card', id },
    el('div', { class: 'label' }, label),
    el('div', { class: 'value', 'data-value': raw === null || raw === undefined ? undefined : String(raw) }, value),
    hint ? el('div', { class: 'hint' }, hint) : null,
  )
}

export interface ChartSpec {
  id: string
  title: string
  yLabel: string
  series: Series[]
  caption?: string
  xLabel?: string
  logY?: boolean
}

const parser = new DOMParser()

/** One chart panel: the package's SVG line chart, or a line saying there is nothing to draw yet. */
export function chart(spec: ChartSpec): HTMLElement {
  const figure = el('figure', { class: 'chart', id: spec.id, 'data-series': String(spec.series.length) })
  const drawable = spec.series.filter((s) => s.points.length > 0)
  if (!drawable.length) {
    figure.append(el('div', { class: 'none' }, `${spec.title}: nothing logged yet`))
    return figure
  }
  // One series needs no legend: the title names it, and the plot gets the width.
  const legend = drawable.length === 1 ? 'none' : 'auto'
  const svg = lineChart({
    title: spec.title,
    xLabel: spec.xLabel ?? 'step',
    yLabel: spec.yLabel,
    series: drawable,
    width: 720,
    height: 340,
    legend,
    logY: spec.logY,
  })
  const doc = parser.parseFromString(svg, 'image/svg+xml')
  figure.append(document.importNode(doc.documentElement, true))
  if (spec.caption) figure.append(el('figcaption', {}, spec.caption))
  return figure
}

/** eval_loss → "eval", eval_code_loss → "code": the dataset's name as the run's YAML gave it. */
export const evalName = (key: string): string =>
  key === 'eval_loss' ? 'eval' : key.replace(/^eval_/, '').replace(/_loss$/, '')

/** A card's or column's heading for an eval key: "eval loss", or "eval code" for eval_code_loss. */
export const evalLabel = (key: string): string => (key === 'eval_loss' ? 'eval loss' : `eval ${evalName(key)}`)

export const asSeries = (
  label: string,
  points: Point[] | undefined,
  options: { dashed?: boolean; markers?: boolean } = {},
): Series => ({
  label,
  points: points ?? [],
  ...options,
})
