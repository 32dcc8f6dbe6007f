/**
 * Text for the charts (chart.ts): width estimates, wrapping and fitting, and SVG text elements. Pure, like chart.ts,
 * so that it loads in a browser too.
 *
 * Widths are estimated from DejaVu Sans's advance widths, the font the PNGs are rendered with. A browser without it
 * falls back to Helvetica or Arial, which are narrower, so there the estimate errs on the safe side.
 */

export const FONT = 'DejaVu Sans, Helvetica, Arial, sans-serif'
// Vertical extent of a line of text around its baseline, and the distance between baselines, in ems.
export const ASCENT = 0.95
export const DESCENT = 0.25
export const LINE = 1.25

// Advance widths of DejaVu Sans and DejaVu Sans Bold for ' ' to '~', in thousandths of an em (from the fonts' hmtx
// tables). Other characters count as the widest glyph. 4% on top covers hinting and rounding.
const REGULAR = [
  318, 401, 460, 838, 636, 950, 780, 275, 390, 390, 500, 838, 318, 361, 318, 337, 636, 636, 636, 636, 636, 636, 636,
  636, 636, 636, 337, 337, 838, 838, 838, 531, 1000, 684, 686, 698, 770, 632, 575, 775, 752, 295, 295, 656, 557, 863,
  748, 787, 603, 787, 695, 635, 611, 732, 684, 989, 685, 611, 685, 390, 337, 390, 838, 500, 500, 613, 635, 550, 635,
  615, 352, 635, 634, 278, 278, 579, 278, 974, 634, 612, 635, 635, 411, 521, 392, 634, 592, 818, 592, 592, 525, 636,
  337, 636, 838,
]
const BOLD = [
  348, 456, 521, 838, 696, 1002, 872, 306, 457, 457, 523, 838, 380, 415, 380, 365, 696, 696, 696, 696, 696, 696, 696,
  696, 696, 696, 400, 400, 838, 838, 838, 580, 1000, 774, 762, 734, 830, 683, 683, 821, 837, 372, 372, 775, 637, 995,
  837, 850, 733, 850, 770, 720, 682, 812, 774, 1103, 771, 724, 725, 457, 365, 457, 838, 500, 500, 675, 716, 593, 716,
  678, 435, 716, 712, 343, 343, 665, 343, 1042, 712, 687, 716, 716, 493, 595, 478, 712, 652, 924, 645, 652, 582, 712,
  365, 712, 838,
]

/** Estimated width of one line of text in pixels: at least what DejaVu Sans renders. */
export function textWidth(text: string, fontSize: number, bold = false): number {
  const table = bold ? BOLD : REGULAR
  let units = 0
  for (const ch of text) {
    const code = ch.codePointAt(0)!
    units += code >= 32 && code < 127 ? table[code - 32]! : bold ? 1103 : 1000
  }
  return (units / 1000) * fontSize * 1.04
}

/**
 * Greedy wrap to maxWidth, breaking after spaces and after , : ; / = - _ (so that a strategy name such as
 * freeze:first-2,modules=mlp breaks at its parts); a piece wider than a line is cut where it must be.
 */
export function wrapText(text: string, maxWidth: number, fontSize: number, bold = false): string[] {
  const fits = (s: string) => textWidth(s.trimEnd(), fontSize, bold) <= maxWidth
  const lines: string[] = []
  let line = ''
  for (const piece of text.trim().match(/[^\s,:;/=_-]*(?:[,:;/=_-]+\s*|\s+|$)/g) ?? []) {
    if (fits(line + piece)) {
      line += piece
      continue
    }
    if (line) lines.push(line.trimEnd())
    line = ''
    for (const ch of piece) {
      if (line && !fits(line + ch)) {
        lines.push(line.trimEnd())
        line = ''
      }
      line += ch
    }
  }
  if (line.trimEnd() || lines.length === 0) lines.push(line.trimEnd())
  return lines
}

/** Text laid out: its lines and their font size. */
export interface Fitted {
  lines: string[]
  size: number
}

/**
 * The text at `size` on one line; else a point smaller; else wrapped into at most maxLines, at the largest
 * size down to minSize that allows it; else wrapped at minSize into as many lines as it takes.
 */
export function fitText(
  text: string,
  maxWidth: number,
  size: number,
  minSize: number,
  bold = false,
  maxLines = 2,
): Fitted {
  for (let s = size; s >= Math.max(minSize, size - 1); s--) {
    if (textWidth(text, s, bold) <= maxWidth) return { lines: [text], size: s }
  }
  for (let s = size; s >= minSize; s--) {
    const lines = wrapText(text, maxWidth, s, bold)
    if (lines.length <= maxLines) return { lines: balanced(text, maxWidth, s, bold, lines.length), size: s }
  }
  return { lines: wrapText(text, maxWidth, minSize, bold), size: minSize }
}

/** The same number of lines as wrapping to maxWidth gives, but as even as they go (the narrowest that still fits). */
function balanced(text: string, maxWidth: number, size: number, bold: boolean, count: number): string[] {
  let [narrow, wide] = [0, maxWidth]
  for (let i = 0; i < 16; i++) {
    const middle = (narrow + wide) / 2
    if (wrapText(text, middle, size, bold).length <= count) wide = middle
    else narrow = middle
  }
  return wrapText(text, wide, size, bold)
}

export const blockHeight = (lines: number, size: number) => ((lines - 1) * LINE + ASCENT + DESCENT) * size
export const blockWidth = (f: Fitted, bold = false) => Math.max(...f.lines.map((l) => textWidth(l, f.size, bold)))

export const escapeXml = (s: string) =>
  s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;')
/** A coordinate with one decimal: enough for a pixel grid, and short SVG. */
export const r1 = (v: number) => String(Math.round(v * 10) / 10)

export interface TextStyle {
  anchor?: 'start' | 'middle' | 'end'
  bold?: boolean
  fill?: string
  cls?: string
  /** Turned 90° counter-clockwise (a y-axis label): the lines then stack rightwards from `top`, along y = x. */
  rotated?: boolean
}

/** <text> elements, one per line, for a block whose top edge is `top` (rotated: whose left edge is `top`). */
export function textBlock(f: Fitted, x: number, top: number, style: TextStyle = {}): string[] {
  const attrs = [`font-size="${f.size}"`]
  if (style.anchor && style.anchor !== 'start') attrs.push(`text-anchor="${style.anchor}"`)
  if (style.bold) attrs.push('font-weight="bold"')
  if (style.fill) attrs.push(`fill="${escapeXml(style.fill)}"`)
  if (style.cls) attrs.push(`class="${style.cls}"`)
  return f.lines.map((line, i) => {
    const baseline = top + (ASCENT + i * LINE) * f.size
    const place = style.rotated
      ? `transform="translate(${r1(baseline)} ${r1(x)}) rotate(-90)"`
      : `x="${r1(x)}" y="${r1(baseline)}"`
    return `<text ${place} ${attrs.join(' ')}>${escapeXml(line)}</text>`
  })
}
