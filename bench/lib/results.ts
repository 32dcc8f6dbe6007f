/** Writes a benchmark's result as bench/results/<name>.json and .md. */
import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

export const RESULTS_DIR = fileURLToPath(new URL('../results', import.meta.url))

export async function writeResult(name: string, json: unknown, markdown: string): Promise<void> {
  await mkdir(RESULTS_DIR, { recursive: true })
  await writeFile(join(RESULTS_DIR, `${name}.json`), `${JSON.stringify(json, null, 2)}\n`)
  await writeFile(join(RESULTS_DIR, `${name}.md`), `${markdown}\n`)
}
