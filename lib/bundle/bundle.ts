/**
 * `llamapro bundle <out_dir>` and `bundle()`: the compiled addon and every shared library it loads from its
 * LibTorch (found by the dynamic loader itself, through ldd), copied into one folder, each with RUNPATH `$ORIGIN`
 * so that the folder works wherever it is put. The system's own libraries are left out and listed (see
 * system-libraries.ts). Before the folder is renamed into place, every file is checked (RUNPATH, ldd resolving
 * inside the folder) and the addon is loaded from it in a fresh process without LD_LIBRARY_PATH.
 */
import { execFile } from 'node:child_process'
import { createHash } from 'node:crypto'
import { chmod, copyFile, readdir, readFile, realpath, stat, writeFile } from 'node:fs/promises'
import { basename, dirname, join, resolve, sep } from 'node:path'
import { promisify } from 'node:util'
import { LlamaproError } from '../errors.js'
import { addonPath } from '../native/load.js'
import { checkOutputDir, writeFolderAtomically } from '../util/atomic-dir.js'
import { VERSION } from '../version.js'
import {
  compareVersions,
  dynamicSection,
  requiredVersions,
  resolveLibraries,
  setRunpath,
  usesCxx11Abi,
  type Resolution,
} from './elf.js'
import {
  MANIFEST_FORMAT,
  MANIFEST_NAME,
  MANIFEST_VERSION,
  type BundleFile,
  type BundleManifest,
  type SystemLibrary,
} from './manifest.js'
import { DLOPENED, isDriverLibrary, isSystemLibrary } from './system-libraries.js'

const execFileAsync = promisify(execFile)

export const ADDON_NAME = 'llamapro.node'
export const RUNPATH = '$ORIGIN'
/**
 * The Node-API version the addon is compiled for (CMakeLists.txt: NAPI_VERSION=8; package.json binary.napi_versions).
 */
const NAPI_VERSION = 8

export interface BundleOptions {
  /** The addon to bundle (default: the one llamapro would load now). */
  addon?: string
  /** Replace a non-empty out_dir. */
  force?: boolean
  /** The environment ldd resolves in (default: this process's; LD_LIBRARY_PATH there is honoured). */
  env?: Record<string, string | undefined>
  onProgress?: (message: string) => void
}

export interface BundleResult {
  dir: string
  manifest: BundleManifest
  /** Sum of the bundled files' sizes. */
  bytes: number
}

/** Runs `work` over `items`, at most `limit` at a time (ldd and patchelf are processes). */
async function eachLimited<T, R>(items: readonly T[], limit: number, work: (item: T) => Promise<R>): Promise<R[]> {
  const results = new Array<R>(items.length)
  let next = 0
  const lane = async () => {
    while (next < items.length) {
      const i = next++
      results[i] = await work(items[i]!)
    }
  }
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, lane))
  return results
}

async function sha256(path: string): Promise<string> {
  return createHash('sha256')
    .update(await readFile(path))
    .digest('hex')
}

/**
 * Names (sonames) to bundle, each with the file it is copied from, and the system libraries left out (path null:
 * a GPU driver library absent where the bundle is made). Exported for tests.
 */
export async function collectLibraries(
  addon: string,
  env: Record<string, string | undefined>,
): Promise<{ bundled: Map<string, string>; system: SystemLibrary[] }> {
  const bundled = new Map<string, string>()
  const system: SystemLibrary[] = []
  const missing: string[] = []
  const add = async (resolutions: Resolution[]) => {
    for (const r of resolutions) {
      if (r.path === null && isDriverLibrary(r.name)) {
        if (!system.some((s) => s.name === basename(r.name))) system.push({ name: basename(r.name), path: null })
      } else if (r.path === null) missing.push(r.name)
      else if (isSystemLibrary(r.name)) {
        if (!system.some((s) => s.name === basename(r.name))) system.push({ name: basename(r.name), path: r.path })
      } else if (!bundled.has(r.name)) bundled.set(r.name, await realpath(r.path))
    }
  }
  await add(await resolveLibraries(addon, env))
  // Libraries loaded with dlopen: found beside their loader, with their own dependencies. A worklist, since one
  // brings in the loader of the next (libtorch_cuda -> libcaffe2_nvrtc -> its dependency libnvrtc -> NVRTC's builtins).
  const visited = new Set<string>()
  for (
    let pending = [...bundled.keys()];
    pending.length > 0;
    pending = [...bundled.keys()].filter((n) => !visited.has(n))
  ) {
    for (const name of pending) {
      visited.add(name)
      for (const { loader, companions } of DLOPENED) {
        if (!loader.test(name)) continue
        const folder = dirname(bundled.get(name)!)
        for (const entry of (await readdir(folder)).sort()) {
          if (!companions.test(entry) || bundled.has(entry)) continue
          bundled.set(entry, await realpath(join(folder, entry)))
          await add(await resolveLibraries(join(folder, entry), env))
        }
      }
    }
  }
  if (missing.length > 0) {
    const unique = [...new Set(missing)]
    throw new LlamaproError(
      'LLAMAPRO_BUNDLE',
      `cannot bundle ${addon}: the loader does not find ${unique.join(', ')} (needed by the addon or one of its ` +
        `libraries). ` +
        'Install what provides it, or point LD_LIBRARY_PATH at its folder, and run llamapro bundle again.',
    )
  }
  return { bundled, system }
}

/** Loads the bundled addon in a fresh process with no LD_LIBRARY_PATH; returns what it reports. */
async function loadInChild(addon: string): Promise<{ torchVersion: string; cuda: boolean }> {
  const env = { ...process.env }
  delete env.LD_LIBRARY_PATH
  delete env.LD_PRELOAD
  const script =
    'const m = { exports: {} }; process.dlopen(m, process.argv[1]); const i = m.exports.runtimeInfo();' +
    'console.log(JSON.stringify({ torchVersion: i.torchVersion, cuda: i.cuda.compiled }))'
  try {
    const { stdout } = await execFileAsync(process.execPath, ['-e', script, addon], { env, maxBuffer: 1 << 20 })
    return JSON.parse(stdout.trim().split('\n').pop()!) as { torchVersion: string; cuda: boolean }
  } catch (error) {
    const e = error as { stderr?: string; message: string }
    throw new LlamaproError(
      'LLAMAPRO_BUNDLE',
      `the bundled addon does not load from its own folder: ` +
        `${(e.stderr || e.message).trim().split('\n').slice(0, 3).join(' ')}`,
    )
  }
}

/** Every file's RUNPATH is $ORIGIN, and ldd finds each dependency in the folder or among the system libraries. */
export async function checkRelocatable(dir: string, names: readonly string[]): Promise<void> {
  const inside = resolve(dir) + sep
  await eachLimited(names, 4, async (name) => {
    const file = join(dir, name)
    const section = await dynamicSection(file)
    if (section.runpath !== RUNPATH || section.rpathTag !== 'RUNPATH') {
      throw new LlamaproError(
        'LLAMAPRO_BUNDLE',
        `${name} has ${section.rpathTag ?? 'no RUNPATH'} '${section.runpath ?? ''}' after patchelf; expected RUNPATH ` +
          `${RUNPATH}`,
      )
    }
    for (const r of await resolveLibraries(file, { ...process.env, LD_LIBRARY_PATH: '' })) {
      // the GPU driver's, absent on this machine (see isDriverLibrary)
      if (r.path === null && isDriverLibrary(r.name)) continue
      if (r.path === null)
        throw new LlamaproError(
          'LLAMAPRO_BUNDLE',
          `in the bundle, ${name} needs ${r.name}, which is neither bundled nor on the system`,
        )
      if (!r.path.startsWith(inside) && !isSystemLibrary(r.name)) {
        throw new LlamaproError(
          'LLAMAPRO_BUNDLE',
          `in the bundle, ${name} would load ${r.name} from ${r.path}, outside the bundle`,
        )
      }
    }
  })
}

export async function bundle(outDir: string, options: BundleOptions = {}): Promise<BundleResult> {
  const progress = options.onProgress ?? (() => undefined)
  const addon = resolve(options.addon ?? addonPath())
  try {
    await stat(addon)
  } catch {
    throw new LlamaproError(
      'LLAMAPRO_BUNDLE',
      `no addon at ${addon}; build it first (npm run build:native, or npm rebuild llamapro)`,
    )
  }
  await checkOutputDir(outDir, options.force ?? false)
  const env = options.env ?? process.env
  progress(`resolving the libraries ${addon} loads`)
  const { bundled, system } = await collectLibraries(addon, env)

  const dir = await writeFolderAtomically(outDir, async (tmp) => {
    progress(`copying ${bundled.size} libraries`)
    const copies: [string, string][] = [[ADDON_NAME, addon], ...[...bundled].sort(([a], [b]) => a.localeCompare(b))]
    await eachLimited(copies, 4, async ([name, source]) => {
      await copyFile(source, join(tmp, name))
      await chmod(join(tmp, name), 0o755)
      await setRunpath(join(tmp, name), RUNPATH)
    })
    progress('checking RUNPATH and ldd of every file')
    await checkRelocatable(
      tmp,
      copies.map(([name]) => name),
    )
    progress('loading the bundled addon in a fresh process')
    const loaded = await loadInChild(join(tmp, ADDON_NAME))

    const files: BundleFile[] = await eachLimited(copies, 4, async ([name, source]) => ({
      name,
      bytes: (await stat(join(tmp, name))).size,
      sha256: await sha256(join(tmp, name)),
      from: source,
    }))
    const newest = { glibc: null as string | null, glibcxx: null as string | null }
    for (const versions of await eachLimited(copies, 4, ([name]) => requiredVersions(join(tmp, name)))) {
      if (versions.GLIBC && (!newest.glibc || compareVersions(versions.GLIBC, newest.glibc) > 0))
        newest.glibc = versions.GLIBC
      if (versions.GLIBCXX && (!newest.glibcxx || compareVersions(versions.GLIBCXX, newest.glibcxx) > 0))
        newest.glibcxx = versions.GLIBCXX
    }
    const manifest: BundleManifest = {
      format: MANIFEST_FORMAT,
      formatVersion: MANIFEST_VERSION,
      llamapro: VERSION,
      created: new Date().toISOString(),
      platform: process.platform,
      arch: process.arch,
      napi: NAPI_VERSION,
      libtorch: {
        version: loaded.torchVersion,
        cuda: loaded.cuda,
        cxx11Abi: await usesCxx11Abi(join(tmp, ADDON_NAME)),
      },
      requires: newest,
      addon: ADDON_NAME,
      files,
      system: system.sort((a, b) => a.name.localeCompare(b.name)),
    }
    await writeFile(join(tmp, MANIFEST_NAME), `${JSON.stringify(manifest, null, 2)}\n`)
    return { dir: resolve(outDir), manifest }
  })
  return { ...dir, bytes: dir.manifest.files.reduce((sum, f) => sum + f.bytes, 0) }
}
