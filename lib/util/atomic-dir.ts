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
  if (!info.isDirectory()) throw new LlamaproError('LLAMAPRO_OUTPUT_EXISTS', `output path ${path} exists and is a file, not a folder`)
  if (!replace && (await readdir(path)).length > 0) throw new OutputExistsError(path, flag)
}

const uniqueSuffix = () => `${process.pid}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`

/**
 * Runs `build(tmp)` on a fresh temporary folder next to `dest`, then moves it to `dest` (replacing what is
 * there). On failure the temporary folder is removed and `dest` is untouched.
 */
export async function writeFolderAtomically<T>(dest: string, build: (tmp: string) => Promise<T>): Promise<T> {
  const target = resolve(dest)
  await mkdir(dirname(target), { recursive: true })
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
