/** Stands in for node:module in the browser (see IMPORT_MAP in lib/board/page.ts): the page never renders PNGs. */
export function createRequire(): (id: string) => never {
  return (id: string) => {
    throw new Error(`${id} is not available in the browser`)
  }
}
