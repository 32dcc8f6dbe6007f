/**
 * Loads the compiled addon and turns a failed load into an error that says what to do, instead of a raw dlopen
 * message. Where it comes from, first match wins:
 *   1. setAddonDir(dir), called before the first use           a bundle written by `llamapro bundle`
 *   2. LLAMAPRO_ADDON_DIR=<dir>                                a bundle
 *   3. the package, through node-gyp-build: build/Release/llamapro.node, else prebuilds/<platform>-<arch>/
 *      (where an app can drop a bundle so that it is found with no setting)
 * A bundle's manifest.json is checked against the running platform before the addon is loaded (lib/bundle).
 */
import { existsSync, readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { checkManifest, MANIFEST_NAME, readManifest, type BundleManifest } from '../bundle/manifest.js'
import { LlamaproError } from '../errors.js'
import type { NativeBinding } from './binding.js'
import { nativeModelContract } from '../checkpoint/model-contract.js'
import { attachKernelOptions } from './kernel-options.js'

const require = createRequire(import.meta.url)

/** The package folder: two levels up from lib/native/ and from dist/native/. */
export const PACKAGE_ROOT = fileURLToPath(new URL('../..', import.meta.url))

export class NativeLoadError extends LlamaproError {
  constructor(message: string, cause: unknown) {
    super('LLAMAPRO_NATIVE_LOAD', message, { cause })
    this.name = 'NativeLoadError'
  }
}

/** Which LibTorch the addon was built against, as scripts/install.mjs recorded it. */
export function builtAgainst(root: string = PACKAGE_ROOT): { source: string; cmakeDir: string } | undefined {
  const record = join(root, 'build', 'libtorch.json')
  if (!existsSync(record)) return undefined
  try {
    return JSON.parse(readFileSync(record, 'utf8')) as { source: string; cmakeDir: string }
  } catch {
    return undefined
  }
}

const REBUILD = 'Rebuild it with `npm rebuild llamapro` (in a checkout: `npm run build:native`).'

/** Where the addon is loaded from: its file, and the bundle folder when it is one. */
export interface AddonLocation {
  file: string
  bundle?: { dir: string; manifest: BundleManifest; source: 'setAddonDir' | 'LLAMAPRO_ADDON_DIR' | 'prebuilds' }
}

/** Explains a failed load of an addon from a bundle: the bundle, the missing piece, and what to do. */
function diagnoseBundleFailure(raw: string, bundle: NonNullable<AddonLocation['bundle']>): string {
  const { dir, manifest } = bundle
  const made = `(made for LibTorch ${manifest.libtorch.version}${manifest.libtorch.cuda ? ' with CUDA' : ', CPU'})`
  const remake = 'Recreate the bundle with `llamapro bundle <dir>` where the addon was built, and copy it whole.'
  const missingVersion = /((?:GLIBCXX|CXXABI|GLIBC)_[\d.]+)' not found/.exec(raw)
  const missingLibrary = /([\w.+-]+\.so[\w.]*): cannot open shared object file/.exec(raw)
  const undefinedSymbol = /undefined symbol: (\S+)/.exec(raw)
  if (missingVersion) {
    return (
      `The llamapro bundle at ${dir} ${made} needs ${missingVersion[1]}, which this system's C/C++ runtime does not ` +
      `provide ` +
      `(the bundle needs glibc ${manifest.requires.glibc ?? '?'} and libstdc++ ` +
      `GLIBCXX_${manifest.requires.glibcxx ?? '?'}). ` +
      'Make the bundle on a system at least as old as the oldest your users run, or update this system.'
    )
  }
  if (missingLibrary) {
    const listed = manifest.files.some((f) => f.name === missingLibrary[1])
      ? 'it is listed in its manifest but'
      : 'it is not in the bundle and'
    return (
      `The llamapro bundle at ${dir} ${made} lacks ${missingLibrary[1]}: ${listed} the loader cannot open it. ` +
      `${remake}`
    )
  }
  if (undefinedSymbol) {
    return (
      `The libraries in the llamapro bundle at ${dir} ${made} do not match its addon (missing symbol ` +
      `${undefinedSymbol[1]}): ` +
      `a file in it was replaced by one from another LibTorch. ${remake}`
    )
  }
  return `llamapro's addon could not be loaded from the bundle at ${dir} ${made}. ${remake}`
}

/** Explains a failed addon load: what broke and what to do about it. */
export function diagnoseLoadFailure(
  error: unknown,
  root: string = PACKAGE_ROOT,
  location?: AddonLocation,
): NativeLoadError {
  const raw = error instanceof Error ? error.message : String(error)
  if (location?.bundle)
    return new NativeLoadError(
      `${diagnoseBundleFailure(raw, location.bundle)}\n  (loader said: ${raw.split('\n')[0]})`,
      error,
    )
  const built = builtAgainst(root)
  const builtNote = built ? ` It was built against the LibTorch at ${built.cmakeDir} (found by ${built.source}).` : ''
  let advice: string

  const missingVersion = /((?:GLIBCXX|CXXABI|GLIBC)_[\d.]+)' not found/.exec(raw)
  const missingLibrary = /([\w.+-]+\.so[\w.]*): cannot open shared object file/.exec(raw)
  const undefinedSymbol = /undefined symbol: (\S+)/.exec(raw)

  if (/No native build was found/.test(raw)) {
    advice =
      `llamapro's native addon is not built (looked in ${join(root, 'build', 'Release')}). ${REBUILD} ` +
      'Building needs LibTorch: see "How LibTorch is found" in docs/install.md, or run `npm run setup` on Debian.'
  } else if (missingVersion) {
    advice =
      `The addon needs ${missingVersion[1]}, which the C++ runtime this process loaded does not provide. ` +
      'The addon or LibTorch was compiled with a newer compiler than this system (or this Electron) ships. ' +
      `Build on this machine with its own compiler. ${REBUILD}`
  } else if (missingLibrary) {
    advice =
      `A library the addon needs, ${missingLibrary[1]}, cannot be found.${builtNote} ` +
      'If that LibTorch was moved or removed, point LIBTORCH at the one you have now and rebuild. ' +
      REBUILD
  } else if (undefinedSymbol) {
    advice =
      `The addon and the LibTorch it loaded do not match (missing symbol ${undefinedSymbol[1]}).${builtNote} ` +
      `This happens when a different LibTorch is found at run time than at build time. ${REBUILD}`
  } else if (/invalid ELF header|file too short|wrong ELF class|not a dynamic executable/.test(raw)) {
    advice =
      `The addon file in ${join(root, 'build', 'Release')} is damaged or was built for another platform. ` +
      `${REBUILD}`
  } else {
    advice = `llamapro's native addon could not be loaded.${builtNote} ${REBUILD}`
  }
  return new NativeLoadError(`${advice}\n  (loader said: ${raw.split('\n')[0]})`, error)
}

let chosenDir: string | undefined
let loaded: NativeBinding | undefined
let loadedFrom: AddonLocation | undefined

/**
 * Load the addon from this bundle folder (written by `llamapro bundle`) instead of the package's build. Must be
 * called before anything uses the addon; LLAMAPRO_ADDON_DIR does the same from the environment.
 */
export function setAddonDir(dir: string): void {
  if (loaded) {
    throw new LlamaproError(
      'LLAMAPRO_ADDON_LOADED',
      `setAddonDir(${JSON.stringify(dir)}): the addon is already loaded from ${loadedFrom?.file}; a process can load ` +
        `it once. ` +
        'Call setAddonDir before the first llamapro call that needs LibTorch (or set LLAMAPRO_ADDON_DIR).',
    )
  }
  chosenDir = resolve(dir)
}

function bundleLocation(dir: string, source: NonNullable<AddonLocation['bundle']>['source']): AddonLocation {
  const manifest = readManifest(dir)
  return { file: join(dir, manifest.addon), bundle: { dir, manifest, source } }
}

/**
 * Which addon file would be loaded (see the order at the top of this file), without loading it. A bundle's
 * manifest is read, not yet checked.
 */
export function locateAddon(
  root: string = PACKAGE_ROOT,
  env: Record<string, string | undefined> = process.env,
): AddonLocation {
  if (root === PACKAGE_ROOT && chosenDir) return bundleLocation(chosenDir, 'setAddonDir')
  if (root === PACKAGE_ROOT && env.LLAMAPRO_ADDON_DIR)
    return bundleLocation(resolve(env.LLAMAPRO_ADDON_DIR), 'LLAMAPRO_ADDON_DIR')
  const nodeGypBuild = require('node-gyp-build') as { resolve(dir: string): string }
  const file = nodeGypBuild.resolve(root)
  return existsSync(join(dirname(file), MANIFEST_NAME)) ? bundleLocation(dirname(file), 'prebuilds') : { file }
}

/** The addon file llamapro loads (or would load): what `llamapro bundle` copies by default. */
export function addonPath(): string {
  return loadedFrom?.file ?? locateAddon().file
}

/** Loads the addon from `root` (or the chosen bundle); throws NativeLoadError with a diagnosis. */
export function loadAddon(root: string = PACKAGE_ROOT): NativeBinding {
  let location: AddonLocation
  try {
    location = locateAddon(root)
    if (location.bundle) checkManifest(location.bundle.dir, location.bundle.manifest)
  } catch (error) {
    if (error instanceof LlamaproError) throw error // the bundle's own error names it and says what to do
    throw diagnoseLoadFailure(error, root)
  }
  let binding: NativeBinding
  try {
    binding = require(location.file) as NativeBinding
  } catch (error) {
    throw diagnoseLoadFailure(error, root, location)
  }
  if (location.bundle) {
    const actual = binding.runtimeInfo().torchVersion
    const { manifest, dir } = location.bundle
    if (actual !== manifest.libtorch.version) {
      throw new NativeLoadError(
        `The llamapro bundle at ${dir} says LibTorch ${manifest.libtorch.version} in its ${MANIFEST_NAME}, but its ` +
          `libraries are LibTorch ${actual}: ` +
          'the manifest comes from another bundle. Recreate the bundle with `llamapro bundle <dir>` and copy it whole.',
        undefined,
      )
    }
  }
  if (root === PACKAGE_ROOT) loadedFrom = location
  return binding
}

/**
 * The addon, loaded once on first use (so that pure-TS features work without LibTorch), with the model contract
 * (lib/checkpoint/model-contract.ts) and the kernel options (lib/native/kernel-options.ts: the environment's,
 * checked) in effect before anything runs.
 */
export function native(): NativeBinding {
  if (!loaded) {
    const binding = loadAddon()
    binding.setModelContract(nativeModelContract())
    attachKernelOptions(binding)
    loaded = binding
  }
  return loaded
}

/** Where the loaded addon came from (undefined before the first use). */
export function loadedAddon(): AddonLocation | undefined {
  return loadedFrom
}
