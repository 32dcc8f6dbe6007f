/**
 * Loads the compiled addon (build/Release/llamapro.node, through node-gyp-build) and turns a failed load into
 * an error that says what to do, instead of a raw dlopen message.
 */
import { existsSync, readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { LlamaproError } from '../errors.js'
import type { NativeBinding } from './binding.js'

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

/** Explains a failed addon load: what broke and what to do about it. */
export function diagnoseLoadFailure(error: unknown, root: string = PACKAGE_ROOT): NativeLoadError {
  const raw = error instanceof Error ? error.message : String(error)
  const built = builtAgainst(root)
  const builtNote = built ? ` It was built against the LibTorch at ${built.cmakeDir} (found by ${built.source}).` : ''
  let advice: string

  const missingVersion = /((?:GLIBCXX|CXXABI|GLIBC)_[\d.]+)' not found/.exec(raw)
  const missingLibrary = /([\w.+-]+\.so[\w.]*): cannot open shared object file/.exec(raw)
  const undefinedSymbol = /undefined symbol: (\S+)/.exec(raw)

  if (/No native build was found/.test(raw)) {
    advice =
      `llamapro's native addon is not built (looked in ${join(root, 'build', 'Release')}). ${REBUILD} ` +
      'Building needs LibTorch: see "How LibTorch is found" in the README, or run `npm run setup` on Debian.'
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
    advice = `The addon file in ${join(root, 'build', 'Release')} is damaged or was built for another platform. ${REBUILD}`
  } else {
    advice = `llamapro's native addon could not be loaded.${builtNote} ${REBUILD}`
  }
  return new NativeLoadError(`${advice}\n  (loader said: ${raw.split('\n')[0]})`, error)
}

/** Loads the addon from `root`; throws NativeLoadError with a diagnosis. */
export function loadAddon(root: string = PACKAGE_ROOT): NativeBinding {
  const nodeGypBuild = require('node-gyp-build') as (dir: string) => unknown
  try {
    return nodeGypBuild(root) as NativeBinding
  } catch (error) {
    throw diagnoseLoadFailure(error, root)
  }
}

let loaded: NativeBinding | undefined

/** The addon, loaded once on first use (so that pure-TS features work without LibTorch). */
export function native(): NativeBinding {
  loaded ??= loadAddon()
  return loaded
}
