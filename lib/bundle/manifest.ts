/**
 * manifest.json of a bundle (written by `llamapro bundle`), and the check made before loading one: the right
 * platform, a new enough glibc and Node-API, and every listed file present with its recorded size.
 */
import { existsSync, readFileSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { LlamaproError } from '../errors.js'
import { compareVersions } from './elf.js'

export const MANIFEST_NAME = 'manifest.json'
export const MANIFEST_FORMAT = 'llamapro-bundle'
export const MANIFEST_VERSION = 1

export interface BundleFile {
  /** File name inside the bundle: the addon, or the soname the addon or a library asks for. */
  name: string
  bytes: number
  sha256: string
  /** Where it was copied from when the bundle was made. */
  from: string
}

export interface BundleManifest {
  format: typeof MANIFEST_FORMAT
  formatVersion: number
  llamapro: string
  created: string
  platform: string
  arch: string
  /** The addon's Node-API version. */
  napi: number
  libtorch: { version: string; cuda: boolean; cxx11Abi: boolean }
  /** The newest symbol versions the bundled files ask of the system's libraries. */
  requires: { glibc: string | null; glibcxx: string | null }
  addon: string
  files: BundleFile[]
  /** Libraries left to the system, with where they were found when the bundle was made. */
  system: SystemLibrary[]
}

/**
 * A library left to the system; path null: not on the machine that made the bundle (the GPU driver's, on a box without
 * a GPU).
 */
export interface SystemLibrary {
  name: string
  path: string | null
}

export class BundleError extends LlamaproError {
  constructor(
    dir: string,
    problem: string,
    advice = 'Recreate it with `llamapro bundle <dir>` where the addon was built.',
  ) {
    super('LLAMAPRO_BUNDLE', `llamapro bundle at ${dir}: ${problem} ${advice}`)
    this.name = 'BundleError'
  }
}

export function readManifest(dir: string): BundleManifest {
  const path = join(dir, MANIFEST_NAME)
  if (!existsSync(path))
    throw new BundleError(dir, `no ${MANIFEST_NAME} there, so it is not a bundle written by llamapro bundle.`)
  let manifest: BundleManifest
  try {
    manifest = JSON.parse(readFileSync(path, 'utf8')) as BundleManifest
  } catch (error) {
    throw new BundleError(dir, `${MANIFEST_NAME} is not valid JSON (${(error as Error).message}).`)
  }
  if (
    manifest?.format !== MANIFEST_FORMAT ||
    !Array.isArray(manifest.files) ||
    !manifest.files.some((f) => f.name === manifest.addon)
  ) {
    throw new BundleError(
      dir,
      `${MANIFEST_NAME} is not a llamapro bundle manifest (its "format" must be "${MANIFEST_FORMAT}", and "files" ` +
        `must list its "addon").`,
    )
  }
  if (manifest.formatVersion > MANIFEST_VERSION) {
    throw new BundleError(
      dir,
      `${MANIFEST_NAME} has format version ${manifest.formatVersion}; this llamapro reads up to ${MANIFEST_VERSION}.`,
      'Update llamapro, or recreate the bundle with this version.',
    )
  }
  return manifest
}

/** What the running process offers, for checkManifest (injectable for tests). */
export interface RunningPlatform {
  platform: string
  arch: string
  /** glibc version, or null on a system without glibc (musl). */
  glibc: string | null
  napi: number
}

export function runningPlatform(): RunningPlatform {
  const header = (process.report?.getReport() as { header?: { glibcVersionRuntime?: string } } | undefined)?.header
  return {
    platform: process.platform,
    arch: process.arch,
    glibc: header?.glibcVersionRuntime ?? null,
    napi: Number(process.versions.napi ?? 0),
  }
}

/**
 * Throws BundleError naming the first thing that keeps this bundle from loading here: another platform, an older
 * glibc or Node-API, a listed file missing or of another size (a damaged copy, or a manifest of other files).
 */
export function checkManifest(
  dir: string,
  manifest: BundleManifest,
  running: RunningPlatform = runningPlatform(),
): void {
  const what = `LibTorch ${manifest.libtorch.version}${manifest.libtorch.cuda ? ' with CUDA' : ', CPU'}`
  if (manifest.platform !== running.platform || manifest.arch !== running.arch) {
    throw new BundleError(
      dir,
      `it was made for ${manifest.platform}-${manifest.arch} (${what}); this is ${running.platform}-${running.arch}.`,
      `Make a bundle on a ${running.platform}-${running.arch} machine with \`llamapro bundle\`.`,
    )
  }
  if (manifest.requires.glibc) {
    if (!running.glibc) {
      throw new BundleError(
        dir,
        `it needs glibc ${manifest.requires.glibc} or newer, and this system has no glibc (musl?).`,
        'Build llamapro on this system instead.',
      )
    }
    if (compareVersions(running.glibc, manifest.requires.glibc) < 0) {
      throw new BundleError(
        dir,
        `it needs glibc ${manifest.requires.glibc} or newer; this system has ${running.glibc}.`,
        'Make the bundle on a system with an older glibc than your users have (the oldest you support).',
      )
    }
  }
  if (manifest.napi > running.napi) {
    throw new BundleError(
      dir,
      `its addon needs Node-API ${manifest.napi}; this runtime has ${running.napi}.`,
      'Use a newer Node.js or Electron.',
    )
  }
  for (const file of manifest.files) {
    const path = join(dir, file.name)
    let size: number
    try {
      size = statSync(path).size
    } catch {
      throw new BundleError(dir, `${file.name} is missing (its ${MANIFEST_NAME} lists it; the bundle holds ${what}).`)
    }
    if (size !== file.bytes) {
      throw new BundleError(
        dir,
        `${file.name} is ${size} bytes but its ${MANIFEST_NAME} (${what}) says ${file.bytes}: the file or the ` +
          `manifest comes from another bundle.`,
      )
    }
  }
}
