/**
 * PNG rendering of the SVG charts (chart.ts) through resvg. Node only, which is why it is not in chart.ts: that
 * module is also loaded by the board page in a browser.
 */
import { createRequire } from 'node:module'

const require = createRequire(import.meta.url)

/**
 * Renders an SVG to PNG with resvg at `scale` times its size (2 by default: sharp in a README or on a high-density
 * screen); undefined when resvg has no build for this platform.
 */
export function svgToPng(svg: string, scale = 2): Uint8Array | undefined {
  let Resvg: new (svg: string, options: object) => { render(): { asPng(): Uint8Array } }
  try {
    ;({ Resvg } = require('@resvg/resvg-js') as { Resvg: typeof Resvg })
  } catch {
    return undefined
  }
  const options = {
    font: { loadSystemFonts: true, defaultFontFamily: 'DejaVu Sans' },
    background: 'white',
    fitTo: { mode: 'zoom', value: scale },
  }
  return new Resvg(svg, options).render().asPng()
}
