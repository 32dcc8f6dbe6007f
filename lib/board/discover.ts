/**
 * Finds the run folders under the folders the board was given: a folder is a run when it holds trainer_log.jsonl
 * (llamapro's and LLaMA-Factory's output_dir), and a sweep's --out holds one per strategy and seed, nested. The
 * walk does not enter a run (its checkpoints are not runs), hidden folders or node_modules, and never follows a
 * link out of the folder it was given.
 */
import { readdir, realpath, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { isInside } from './paths.js'
import { RUN_LOG } from './run-folder.js'

const MAX_DEPTH = 6
/** Folders looked into per walk at most, so that `llamapro board ~` cannot stall the server. */
const MAX_FOLDERS = 5000

export interface FoundRun {
  /** The run folder's real path. */
  dir: string
  /** Its path relative to the given folder ('' for the folder itself), with '/' separators. */
  relative: string
}

export async function findRuns(root: string): Promise<FoundRun[]> {
  const found: FoundRun[] = []
  let budget = MAX_FOLDERS
  const seen = new Set<string>()
  const walk = async (dir: string, rel: string[], depth: number): Promise<void> => {
    // A link back to a folder already walked (a loop) is walked once.
    if (budget-- <= 0 || seen.has(dir)) return
    seen.add(dir)
    let entries
    try {
      entries = await readdir(dir, { withFileTypes: true })
    } catch {
      return
    }
    if (entries.some((e) => e.name === RUN_LOG && (e.isFile() || e.isSymbolicLink()))) {
      found.push({ dir, relative: rel.join('/') })
      return
    }
    if (depth >= MAX_DEPTH) return
    const children = entries
      .filter((e) => e.isDirectory() || e.isSymbolicLink())
      .filter((e) => !e.name.startsWith('.') && e.name !== 'node_modules' && !/^checkpoint-\d+$/.test(e.name))
      .map((e) => e.name)
      .sort((a, b) => a.localeCompare(b, 'en', { numeric: true }))
    for (const name of children) {
      let real
      try {
        real = await realpath(join(dir, name))
        if (!(await stat(real)).isDirectory()) continue
      } catch {
        continue
      }
      if (!isInside(real, root) || real === dir) continue
      await walk(real, [...rel, name], depth + 1)
    }
  }
  await walk(root, [], 0)
  return found
}
