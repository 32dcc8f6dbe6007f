/**
 * `llamapro bundle` on the addon this checkout built (against Debian's LibTorch here; against a pip wheel's
 * LibTorch in scripts/check-bundle-wheel.sh): the bundle is copied to a new path with spaces in it and loaded in a
 * fresh process with no LD_LIBRARY_PATH, and damaged copies give named errors, never a crash.
 * Debian's LibTorch also lives in /usr/lib, so "it loads" alone would prove nothing: the child reports which files
 * it mapped (/proc/self/maps), and each must be the copy inside the moved bundle.
 */
import t from 'tap'
import { execFile, execFileSync } from 'node:child_process'
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { bundle } from '../lib/bundle/bundle.js'
import { runBundle } from '../lib/cli/bundle.js'
import { checkManifest, readManifest, type BundleManifest } from '../lib/bundle/manifest.js'
import { REPO_ROOT } from './helpers/python.js'

const run = promisify(execFile)
const CLI = join(REPO_ROOT, 'dist', 'cli', 'main.js')
const PROBE = join(REPO_ROOT, 'test', 'helpers', 'bundle-probe.mjs')
const ADDON = join(REPO_ROOT, 'build', 'Release', 'llamapro.node')
// Written out here rather than imported: the libraries a bundle must leave to the system (glibc, the C++ runtime).
const SYSTEM =
  /^(ld-linux-x86-64\.so\.2|lib(c|m|pthread|dl|rt|resolv|util)\.so\.\d+|libstdc\+\+\.so\.6|libgcc_s\.so\.1)$/
// The LibTorch the addon was built against, as its own CMake package says (TorchConfigVersion.cmake in the folder
// the install script found): Debian's 1.13.0 in CI, pip's 2.x under scripts/check-libtorch-wheel.sh.
const TORCH_VERSION = (() => {
  const { cmakeDir } = JSON.parse(readFileSync(join(REPO_ROOT, 'build', 'libtorch.json'), 'utf8')) as {
    cmakeDir: string
  }
  return /set\(PACKAGE_VERSION "([^"]+)"\)/.exec(readFileSync(join(cmakeDir, 'TorchConfigVersion.cmake'), 'utf8'))![1]!
})()
const TORCH_VERSION_RE = TORCH_VERSION.replace(/\./g, '\\.')
/** A version that is not the one built against, for a manifest from another LibTorch. */
const OTHER_VERSION = TORCH_VERSION === '2.15.0' ? '2.11.0' : '2.15.0'

/** A fresh node with no LD_LIBRARY_PATH; resolves with the exit code, signal and output (never rejects). */
function child(args: string[], env: Record<string, string | undefined> = {}, cwd = REPO_ROOT) {
  const clean = { ...process.env, ...env }
  delete clean.LD_LIBRARY_PATH
  for (const [k, v] of Object.entries(env)) if (v === undefined) delete clean[k]
  return new Promise<{ code: number | null; signal: string | null; stdout: string; stderr: string }>((resolve) => {
    const proc = execFile(process.execPath, args, { env: clean, cwd, maxBuffer: 16 << 20 }, (error, stdout, stderr) => {
      resolve({
        code: proc.exitCode,
        signal: proc.signalCode,
        stdout,
        stderr: stderr || (error && !proc.exitCode ? error.message : ''),
      })
    })
  })
}

const probe = async (env: Record<string, string | undefined>) => {
  const r = await child([PROBE], env)
  if (r.code !== 0) throw new Error(`probe failed (${r.code} ${r.signal}): ${r.stderr}`)
  return JSON.parse(r.stdout.trim().split('\n').pop()!)
}

/** A copy of the bundle made of hard links (fast), with `damage` applied; files to change are unlinked first. */
function damagedCopy(
  from: string,
  to: string,
  damage: (dir: string, manifest: BundleManifest) => BundleManifest | undefined,
) {
  execFileSync('cp', ['-al', from, to])
  const manifest = JSON.parse(readFileSync(join(to, 'manifest.json'), 'utf8')) as BundleManifest
  const changed = damage(to, manifest)
  if (changed) {
    rmSync(join(to, 'manifest.json')) // a hard link: replace it, do not write through it into the original
    writeFileSync(join(to, 'manifest.json'), JSON.stringify(changed))
  }
  return to
}

const dir = t.testdir()
const made = join(dir, 'made')
const moved = join(dir, 'My App', 'resources', 'llamapro bundle')
let manifest: BundleManifest

let printed = ''

t.before(async () => {
  // Through the CLI command's code (in this process): what `llamapro bundle made --addon <addon>` does.
  const log = console.log
  console.log = (text: unknown) => (printed += `${String(text)}\n`)
  try {
    await runBundle([made, '--addon', ADDON])
  } finally {
    console.log = log
  }
  manifest = readManifest(made)
  mkdirSync(join(dir, 'My App', 'resources'), { recursive: true })
  execFileSync('cp', ['-a', made, moved])
})

t.test('the manifest lists the addon, its LibTorch and the system libraries left out', async (t) => {
  t.match(printed, new RegExp(`^Wrote ${made.replace(/[/.]/g, '\\$&')}: ${manifest.files.length} files, \\d+ MiB`))
  t.match(printed, new RegExp(`LibTorch ${TORCH_VERSION_RE} \\(CPU, C\\+\\+11 ABI\\), linux-x64`))
  t.match(printed, /needs from the system: glibc >= 2\.\d+, libstdc\+\+ GLIBCXX >= 3\.4\.\d+: .*libc\.so\.6/)
  t.equal(manifest.addon, 'llamapro.node')
  const names = manifest.files.map((f) => f.name).sort()
  t.same(readdirSync(made).sort(), [...names, 'manifest.json'].sort(), 'the folder holds exactly the listed files')
  t.ok(
    names.some((n) => /^libtorch_cpu\.so/.test(n)) && names.some((n) => /^libc10\.so/.test(n)),
    'LibTorch is bundled',
  )
  t.ok(
    names.some((n) => /^libgomp\.so/.test(n) || /^libopenblas\.so/.test(n) || /^libblas\.so/.test(n)),
    'its OpenMP/BLAS runtime too',
  )
  t.same(
    names.filter((n) => SYSTEM.test(n)),
    [],
    'no system library is bundled',
  )
  t.ok(manifest.system.some((s) => s.name === 'libc.so.6') && manifest.system.some((s) => s.name === 'libstdc++.so.6'))
  t.equal(manifest.libtorch.version, TORCH_VERSION, "LibTorch's version, as its TorchConfigVersion.cmake says")
  t.equal(manifest.libtorch.cuda, false)
  t.equal(manifest.libtorch.cxx11Abi, true, "Debian's LibTorch and pip's (since 2.7) use the C++11 ABI")
  t.match(manifest.requires.glibc, /^2\.\d+$/)
  for (const name of ['llamapro.node', names.find((n) => /^libc10\.so/.test(n))!]) {
    const entry = manifest.files.find((f) => f.name === name)!
    const sum = execFileSync('sha256sum', [join(made, name)], { encoding: 'utf8' }).split(' ')[0]
    t.equal(entry.sha256, sum, `${name}: sha256 as sha256sum computes it`)
    t.equal(entry.bytes, statSync(join(made, name)).size)
  }
})

t.test(
  'every file has RUNPATH $ORIGIN and no absolute path; ldd resolves inside the bundle or to the system',
  async (t) => {
    const bad: string[] = []
    for (const name of readdirSync(moved).filter((n) => n !== 'manifest.json')) {
      const file = join(moved, name)
      const paths = execFileSync('readelf', ['-d', '-W', file], { encoding: 'utf8' })
        .split('\n')
        .filter((l) => /\((RUNPATH|RPATH)\)/.test(l))
      if (paths.length !== 1 || !/\(RUNPATH\)\s+Library runpath: \[\$ORIGIN\]$/.test(paths[0]!.trim()))
        bad.push(`${name}: ${paths.join(' | ') || 'none'}`)
      const { stdout } = await run('ldd', [file], { env: { ...process.env, LD_LIBRARY_PATH: '' } })
      for (const line of stdout.split('\n')) {
        const m = /^\s*(\S+) => (.*?)(?: \(0x[0-9a-f]+\))?$/.exec(line)
        if (!m) continue
        if (m[2] === 'not found') bad.push(`${name}: ${m[1]} not found`)
        else if (!m[2]!.startsWith(`${moved}/`) && !SYSTEM.test(m[1]!)) bad.push(`${name}: ${m[1]} from ${m[2]}`)
      }
    }
    t.same(bad, [], `${readdirSync(moved).length - 1} files checked`)
  },
)

t.test(
  'moved to a path with spaces, it loads in a fresh process with no LD_LIBRARY_PATH and trains correctly',
  async (t) => {
    const fromBuild = await probe({ LLAMAPRO_ADDON_DIR: undefined })
    const fromBundle = await probe({ LLAMAPRO_ADDON_DIR: moved })
    t.equal(fromBundle.addon, join(moved, 'llamapro.node'))
    t.ok(fromBundle.torchLibraries.length >= 2, 'LibTorch is mapped')
    t.same(
      fromBundle.torchLibraries.filter((p: string) => !p.startsWith(`${moved}/`)),
      [],
      'every LibTorch file mapped comes from the moved bundle',
    )
    t.ok(
      fromBuild.torchLibraries.every((p: string) => !p.startsWith(dir)),
      'the build-folder run used the system LibTorch',
    )
    // The same computation through the same LibTorch binaries: bit for bit what the build folder computes.
    for (const key of ['logitsSha256', 'lossBefore', 'stepLoss', 'gradNorm', 'lossAfter'])
      t.equal(fromBundle[key], fromBuild[key], key)
    t.ok(
      Math.abs(fromBundle.lossFromLogits - fromBundle.lossBefore) < 1e-5,
      'the loss agrees with cross-entropy computed here from the logits',
    )
    t.ok(fromBundle.lossBefore > 3.5 && fromBundle.lossBefore < 4.8, 'a random model is near ln(64) = 4.16')
    t.ok(fromBundle.stepUpdated && fromBundle.lossAfter < fromBundle.lossBefore - 0.1, 'one AdamW step lowers the loss')
  },
)

t.test('setAddonDir loads the bundle; calling it after the first use is refused', async (t) => {
  const script = `const m = await import(${JSON.stringify(join(REPO_ROOT, 'dist', 'index.js'))}); m.setAddonDir(process.argv[1]); m.info();
    console.log(m.loadedAddon().file); try { m.setAddonDir('/elsewhere') } catch (e) { console.log(e.code, e.message) }`
  const r = await child(['--input-type=module', '-e', script, moved], { LLAMAPRO_ADDON_DIR: undefined })
  t.equal(r.code, 0, r.stderr)
  const [file, refusal] = r.stdout.trim().split('\n')
  t.equal(file, join(moved, 'llamapro.node'))
  t.match(refusal, /^LLAMAPRO_ADDON_LOADED .*already loaded from .*llamapro bundle\/llamapro\.node/)
})

t.test("a bundle in the package's prebuilds/<platform>-<arch>/ is found with no setting", async (t) => {
  const pkg = join(dir, 'installed', 'node_modules', 'llamapro')
  mkdirSync(join(pkg, 'prebuilds'), { recursive: true })
  execFileSync('cp', ['-al', made, join(pkg, 'prebuilds', `${process.platform}-${process.arch}`)])
  execFileSync('cp', ['-r', join(REPO_ROOT, 'dist'), join(REPO_ROOT, 'package.json'), pkg])
  symlinkSync(join(REPO_ROOT, 'node_modules'), join(pkg, 'node_modules'))
  t.notOk(existsSync(join(pkg, 'build')), 'no build folder: node-gyp-build looks in prebuilds/')
  const r = await child([join(pkg, 'dist', 'cli', 'main.js'), 'info', '--json'], { LLAMAPRO_ADDON_DIR: undefined })
  t.equal(r.code, 0, r.stderr)
  t.equal(JSON.parse(r.stdout).libtorch.version, manifest.libtorch.version)
})

t.test('a damaged or mismatched bundle gives a named error in the child, never a crash', async (t) => {
  const torchCpu = manifest.files.find((f) => /^libtorch_cpu\.so/.test(f.name))!.name
  const c10 = manifest.files.find((f) => /^libc10\.so/.test(f.name))!.name
  const stub = join(dir, 'stub')
  mkdirSync(stub)
  writeFileSync(join(stub, 'stub.c'), 'int llamapro_stub(void) { return 0; }\n')
  const cases: [string, (d: string, m: BundleManifest) => BundleManifest | undefined, RegExp][] = [
    [
      'a listed library deleted',
      (d) => void rmSync(join(d, c10)),
      new RegExp(
        `bundle at .*: ${c10.replace(/\./g, '\\.')} is missing \\(its manifest\\.json lists it; the bundle holds ` +
          `LibTorch ${TORCH_VERSION_RE}`,
      ),
    ],
    [
      // Every library here is also in /usr/lib, where the loader would fall back to: the addon is made to ask
      // for a name nothing provides, as a bundle copied without one of its files is on a user's machine.
      'a library the addon needs missing from the bundle and the system',
      (d, m) => {
        const addon = join(d, 'llamapro.node')
        execFileSync('cp', [addon, `${addon}.new`])
        execFileSync('patchelf', ['--replace-needed', c10, 'libc10_gone.so', `${addon}.new`])
        execFileSync('mv', [`${addon}.new`, addon]) // replaces the hard link, not the original file
        return {
          ...m,
          files: m.files.map((f) => (f.name === 'llamapro.node' ? { ...f, bytes: statSync(addon).size } : f)),
        }
      },
      /The llamapro bundle at .* lacks libc10_gone\.so: it is not in the bundle and the loader cannot open it\..*llamapro bundle <dir>/,
    ],
    [
      "the manifest of another LibTorch's bundle",
      (_d, m) => ({
        ...m,
        libtorch: { ...m.libtorch, version: OTHER_VERSION, cuda: true },
        files: m.files.map((f) => (f.name === torchCpu ? { ...f, bytes: 431_227_128 } : f)),
      }),
      new RegExp(
        `${torchCpu.replace(/\./g, '\\.')} is \\d+ bytes but its manifest\\.json \\(LibTorch ` +
          `${OTHER_VERSION.replace(/\./g, '\\.')} with CUDA\\) says 431227128`,
      ),
    ],
    [
      'a manifest naming another LibTorch version over the right files',
      (_d, m) => ({ ...m, libtorch: { ...m.libtorch, version: OTHER_VERSION } }),
      new RegExp(
        `says LibTorch ${OTHER_VERSION.replace(/\./g, '\\.')} in its manifest\\.json, but its libraries are LibTorch ` +
          `${TORCH_VERSION_RE}`,
      ),
    ],
    [
      'a library replaced by one without the symbols the addon needs',
      (d, m) => {
        rmSync(join(d, c10))
        execFileSync('cc', ['-shared', '-fPIC', `-Wl,-soname,${c10}`, '-o', join(d, c10), join(stub, 'stub.c')])
        return { ...m, files: m.files.map((f) => (f.name === c10 ? { ...f, bytes: statSync(join(d, c10)).size } : f)) }
      },
      /libraries in the llamapro bundle at .* do not match its addon \(missing symbol \S+\)/,
    ],
    [
      'a bundle for another machine',
      (_d, m) => ({ ...m, arch: 'arm64' }),
      /made for linux-arm64 .*; this is linux-x64/,
    ],
    [
      'a bundle needing a newer glibc',
      (_d, m) => ({ ...m, requires: { ...m.requires, glibc: '9.99' } }),
      /needs glibc 9\.99 or newer; this system has 2\.\d+/,
    ],
  ]
  for (const [what, damage, expected] of cases) {
    const copy = damagedCopy(made, join(dir, `damaged ${cases.findIndex((c) => c[0] === what)}`), damage)
    const r = await child([CLI, 'info'], { LLAMAPRO_ADDON_DIR: copy })
    t.equal(r.signal, null, `${what}: no crash`)
    t.equal(r.code, 1, `${what}: exit code 1`)
    t.match(r.stderr, expected, what)
  }
})

t.test('checkManifest reads the running platform as given', async (t) => {
  const m = readManifest(made)
  t.doesNotThrow(() => checkManifest(made, m, { platform: 'linux', arch: 'x64', glibc: m.requires.glibc, napi: 8 }))
  t.throws(
    () => checkManifest(made, m, { platform: 'linux', arch: 'x64', glibc: null, napi: 8 }),
    /no glibc \(musl\?\)/,
  )
  t.throws(
    () => checkManifest(made, m, { platform: 'linux', arch: 'x64', glibc: '2.99', napi: 7 }),
    /needs Node-API 8; this runtime has 7/,
  )
  t.throws(() => readManifest(dir), /no manifest\.json there/)
})

t.test('bundle refuses a non-empty folder and names a missing addon', async (t) => {
  await t.rejects(bundle(made, { addon: ADDON }), /already exists and is not empty; pass --force/)
  await t.rejects(bundle(join(dir, 'x'), { addon: join(dir, 'nope.node') }), /no addon at .*nope\.node; build it first/)
  const help = await child([CLI, 'bundle', '--help'])
  t.match(help.stdout, /llamapro bundle <out_dir>/)
  t.match(help.stdout, /RUNPATH \$ORIGIN/)
})
