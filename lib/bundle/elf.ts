/**
 * What a bundle needs to know about a shared library, from the tools that know ELF: `ldd` (the dynamic loader's
 * own resolution, following each object's RUNPATH), `readelf` (the dynamic section and the symbol versions) and
 * `patchelf` (to rewrite RUNPATH; from Debian's patchelf package). Nothing edits ELF bytes here.
 */
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { LlamaproError } from '../errors.js'

const execFileAsync = promisify(execFile)

const TOOL_PACKAGES: Record<string, string> = { ldd: 'libc-bin', readelf: 'binutils', patchelf: 'patchelf' }

export class ToolMissingError extends LlamaproError {
  constructor(tool: string) {
    super(
      'LLAMAPRO_TOOL_MISSING',
      `${tool} is not installed; building a bundle needs it (Debian/Ubuntu: apt-get install ` +
        `${TOOL_PACKAGES[tool] ?? tool}, or npm run setup)`,
    )
    this.name = 'ToolMissingError'
  }
}

async function run(tool: string, args: string[], env?: NodeJS.ProcessEnv): Promise<string> {
  try {
    const { stdout } = await execFileAsync(tool, args, { maxBuffer: 64 * 1024 * 1024, env: env ?? process.env })
    return stdout
  } catch (error) {
    const e = error as NodeJS.ErrnoException & { stderr?: string }
    if (e.code === 'ENOENT') throw new ToolMissingError(tool)
    throw new LlamaproError('LLAMAPRO_BUNDLE', `${tool} ${args.join(' ')} failed: ${(e.stderr || e.message).trim()}`)
  }
}

/** One line of `ldd`: the name asked for and where the loader found it (null: "not found"). */
export interface Resolution {
  name: string
  path: string | null
}

/**
 * The loader's resolution of every library `file` needs, directly or not (ldd lists the whole closure). The
 * virtual vDSO is left out. `env` lets the caller give the environment the addon will load in.
 */
export async function resolveLibraries(file: string, env?: NodeJS.ProcessEnv): Promise<Resolution[]> {
  const out = await run('ldd', [file], env)
  const found: Resolution[] = []
  for (const line of out.split('\n')) {
    const text = line.trim()
    if (!text || text.startsWith('linux-vdso') || text.startsWith('statically linked')) continue
    const mapped = /^(\S+) => (not found|(\S.*?) \(0x[0-9a-f]+\))$/.exec(text)
    if (mapped) {
      found.push({ name: mapped[1]!, path: mapped[2] === 'not found' ? null : mapped[3]! })
      continue
    }
    const direct = /^(\/\S+) \(0x[0-9a-f]+\)$/.exec(text) // the loader itself: /lib64/ld-linux-x86-64.so.2
    if (direct) found.push({ name: direct[1]!.split('/').pop()!, path: direct[1]! })
  }
  return found
}

export interface DynamicSection {
  needed: string[]
  soname: string | null
  /** DT_RUNPATH, or DT_RPATH when the file has that older tag instead; null when neither. */
  runpath: string | null
  rpathTag: 'RUNPATH' | 'RPATH' | null
}

export async function dynamicSection(file: string): Promise<DynamicSection> {
  const out = await run('readelf', ['-d', '-W', file])
  const needed: string[] = []
  let soname: string | null = null
  let runpath: string | null = null
  let rpathTag: DynamicSection['rpathTag'] = null
  for (const line of out.split('\n')) {
    const m = /\((NEEDED|SONAME|RUNPATH|RPATH)\)\s+[^[]*\[(.*)\]/.exec(line)
    if (!m) continue
    if (m[1] === 'NEEDED') needed.push(m[2]!)
    else if (m[1] === 'SONAME') soname = m[2]!
    else {
      runpath = m[2]!
      rpathTag = m[1] as 'RUNPATH' | 'RPATH'
    }
  }
  return { needed, soname, runpath, rpathTag }
}

/** Sets DT_RUNPATH to `runpath` (patchelf turns an old DT_RPATH into DT_RUNPATH). */
export async function setRunpath(file: string, runpath: string): Promise<void> {
  await run('patchelf', ['--set-rpath', runpath, file])
}

/** The newest version of each versioned system library a file asks for: { GLIBC: '2.34', GLIBCXX: '3.4.30' }. */
export async function requiredVersions(file: string): Promise<Record<string, string>> {
  const out = await run('readelf', ['-V', '-W', file])
  const newest: Record<string, string> = {}
  for (const m of out.matchAll(/Name: (GLIBC|GLIBCXX|CXXABI|GCC)_(\d+(?:\.\d+)*)\b/g)) {
    const [family, version] = [m[1]!, m[2]!]
    if (!newest[family] || compareVersions(version, newest[family]!) > 0) newest[family] = version
  }
  return newest
}

/** Compares dotted version numbers: negative, zero or positive. */
export function compareVersions(a: string, b: string): number {
  const pa = a.split('.').map(Number)
  const pb = b.split('.').map(Number)
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const d = (pa[i] ?? 0) - (pb[i] ?? 0)
    if (d !== 0) return d
  }
  return 0
}

/**
 * Whether the file was compiled with libstdc++'s C++11 ABI (_GLIBCXX_USE_CXX11_ABI=1): its dynamic symbols then
 * name std::__cxx11::basic_string. LibTorch and the addon must agree; this reads the addon itself.
 */
export async function usesCxx11Abi(file: string): Promise<boolean> {
  const out = await run('readelf', ['--dyn-syms', '-W', file])
  return out.includes('St7__cxx11')
}
