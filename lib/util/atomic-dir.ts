/**
 * Outputs are built in a temporary folder beside their destination and renamed into place when complete, so an
 * interrupted run never leaves a folder that could be mistaken for a finished one. An existing non-empty
 * destination is refused unless the caller says to replace it.
 */
import { mkdir, readdir, rename, rm, stat, writeFile } from 'node:fs/promises'
import { basename, dirname, join, resolve } from 'node:path'
import { LlamaproError } from '../errors.js'

export class OutputExistsError extends LlamaproError {
  constructor(path: string, flag: string) {
    super('LLAMAPRO_OUTPUT_EXISTS', `output folder ${path} already exists and is not empty; ${flag} to replace it`)
    this.name = 'OutputExistsError'
  }
}

/** Throws unless `path` is absent, an empty folder, or `replace` is set. `flag` names the option in the error. */
export async function checkOutputDir(path: string, replace: boolean, flag = 'pass --force'): Promise<void> {
  let info
  try {
    info = await stat(path)
  } catch {
    return
  }
  if (!info.isDirectory())
    throw new LlamaproError('LLAMAPRO_OUTPUT_EXISTS', `output path ${path} exists and is a file, not a folder`)
  if (!replace && (await readdir(path)).length > 0) throw new OutputExistsError(path, flag)
}

const uniqueSuffix = () => `${process.pid}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`

/**
 * `.<name>.tmp-<pid>-<time>-<random>` and `.<name>.old-<pid>-…` (writeFolderAtomically), `.final-<pid>-<time>` (train).
 */
const TEMPORARY_NAME = /^\.(.+)\.(?:tmp|old)-(\d+)-[0-9a-z]+-[0-9a-z]+$/
const FINAL_STAGING_NAME = /^\.final-(\d+)-[0-9a-z]+$/

/** Whether a process with this id exists (a signal-0 probe: EPERM means it exists but is another user's). */
export function isProcessAlive(pid: number): boolean {
  if (pid === process.pid) return true
  try {
    process.kill(pid, 0)
    return true
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM'
  }
}

/**
 * Removes the temporary folders (and files) in `dir` that a killed llamapro process left behind: names of the form
 * `.<target>.tmp-<pid>-…` (or `.old-`, or a training run's `.final-<pid>-…`) whose process no longer exists.
 * With `target`, only the temporaries of that output name. A live process's temporaries are never touched, and a
 * reused pid only makes this keep a folder, never remove one in use. Returns the paths removed.
 */
export async function removeStaleTemporaries(
  dir: string,
  options: { target?: string; alive?: (pid: number) => boolean } = {},
): Promise<string[]> {
  const alive = options.alive ?? isProcessAlive
  let entries: string[]
  try {
    entries = await readdir(dir)
  } catch {
    return []
  }
  const removed: string[] = []
  for (const entry of entries) {
    const temporary = TEMPORARY_NAME.exec(entry)
    const final = options.target === undefined ? FINAL_STAGING_NAME.exec(entry) : null
    const pid =
      temporary && (options.target === undefined || temporary[1] === options.target)
        ? Number(temporary[2])
        : final
          ? Number(final[1])
          : undefined
    if (pid === undefined || alive(pid)) continue
    const path = join(dir, entry)
    await rm(path, { recursive: true, force: true })
    removed.push(path)
  }
  return removed
}

/** The sentence a caller shows for removed temporaries. */
export function describeStaleRemoval(removed: readonly string[]): string {
  return (
    `removed ${removed.length} stale temporary folder${removed.length === 1 ? '' : 's'} left by ended ` +
    `processes: ${removed.join(', ')}`
  )
}

/** Reports through `warn`, or as a process warning (printed on stderr by default) when the caller gave none. */
function reportStale(removed: readonly string[], warn: ((message: string) => void) | undefined): void {
  if (removed.length === 0) return
  const message = describeStaleRemoval(removed)
  if (warn) warn(message)
  else process.emitWarning(message, { code: 'LLAMAPRO_STALE_TEMPORARY' })
}

export interface AtomicWriteOptions {
  /** Told when stale temporaries of the same destination were removed first (default: a process warning). */
  onWarning?: (message: string) => void
}

/**
 * Runs `build(tmp)` on a fresh temporary folder next to `dest`, then moves it to `dest` (replacing what is
 * there). On failure the temporary folder is removed and `dest` is untouched. Temporaries of the same `dest` left
 * by killed processes are removed first, and reported.
 */
export async function writeFolderAtomically<T>(
  dest: string,
  build: (tmp: string) => Promise<T>,
  options: AtomicWriteOptions = {},
): Promise<T> {
  const target = resolve(dest)
  await mkdir(dirname(target), { recursive: true })
  reportStale(await removeStaleTemporaries(dirname(target), { target: basename(target) }), options.onWarning)
  const tmp = join(dirname(target), `.${basename(target)}.tmp-${uniqueSuffix()}`)
  await mkdir(tmp)
  let result: T
  try {
    result = await build(tmp)
  } catch (error) {
    await rm(tmp, { recursive: true, force: true })
    throw error
  }
  let old: string | undefined
  try {
    await stat(target)
    old = join(dirname(target), `.${basename(target)}.old-${uniqueSuffix()}`)
    await rename(target, old)
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error
  }
  try {
    await rename(tmp, target)
  } catch (error) {
    // Put back what was there, so that a failure here costs the user nothing.
    if (old) await rename(old, target).catch(() => undefined)
    await rm(tmp, { recursive: true, force: true })
    throw error
  }
  if (old) await rm(old, { recursive: true, force: true })
  return result
}

/** Writes a file through a temporary name in the same folder, renamed when complete. */
export async function writeFileAtomically(path: string, data: string | Uint8Array): Promise<void> {
  const tmp = join(dirname(path), `.${basename(path)}.tmp-${uniqueSuffix()}`)
  try {
    await writeFile(tmp, data)
    await rename(tmp, path)
  } catch (error) {
    await rm(tmp, { force: true })
    throw error
  }
}
