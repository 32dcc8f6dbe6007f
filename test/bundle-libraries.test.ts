/**
 * Which libraries `llamapro bundle` takes, on a CUDA LibTorch's shape, without a GPU: small shared libraries
 * compiled here stand in for pip's torch/lib and nvidia/cu13/lib (their file names are what the bundler keys on),
 * so the rules are checked in CI where no CUDA LibTorch is installed. The real thing (pip's torch 2.11 with CUDA 13,
 * 31 files, 3.3 GB) was bundled by hand; bench/results/bundle.md has its figures.
 *
 *  - libtorch_cuda loads libcaffe2_nvrtc with dlopen; that one links libnvrtc, which loads its builtins library
 *    with dlopen: the whole chain must be bundled (a single pass over the first list missed the builtins).
 *  - libcaffe2_nvrtc links libcuda.so.1, the GPU driver, which a build machine without a GPU does not have: the
 *    bundle lists it as a system library not found there, instead of refusing to bundle.
 *  - any other library the loader cannot find is still an error naming it.
 */
import t from 'tap'
import { execFileSync } from 'node:child_process'
import { copyFileSync, mkdirSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { checkRelocatable, collectLibraries } from '../lib/bundle/bundle.js'
import { setRunpath } from '../lib/bundle/elf.js'

/** Compiles a one-function shared library `dir/name` (soname `name`) linked against `needs` (file names in `dir`). */
function library(dir: string, name: string, needs: string[] = [], runpath = '$ORIGIN') {
  const source = join(dir, `${name}.c`)
  writeFileSync(source, `int f_${name.replace(/\W/g, '_')}(void) { return 1; }\n`)
  execFileSync('g++', [
    '-shared',
    '-fPIC',
    '-o',
    join(dir, name),
    '-x',
    'c',
    source,
    '-x',
    'none',
    `-Wl,-soname,${name}`,
    '-Wl,--no-as-needed',
    ...needs.map((n) => join(dir, n)),
    `-Wl,-rpath,${runpath}`,
    '-Wl,--enable-new-dtags',
  ])
  rmSync(source)
}

/** True when this machine's loader knows a libcuda.so.1 (a GPU box): then it resolves like any system library. */
const hasDriver = (() => {
  try {
    return execFileSync('ldconfig', ['-p'], { encoding: 'utf8' }).includes('libcuda.so.1 ')
  } catch {
    return false
  }
})()

/** A fake CUDA LibTorch in `root/torch/lib` and `root/nvidia/cu13/lib`, and an "addon" linked to libtorch_cuda. */
function fakeCudaTorch(root: string, extraNeed?: string) {
  const lib = join(root, 'torch', 'lib')
  const cu13 = join(root, 'nvidia', 'cu13', 'lib')
  mkdirSync(lib, { recursive: true })
  mkdirSync(cu13, { recursive: true })
  // Stand-ins linked against and then deleted: the driver, and a library nothing provides.
  library(lib, 'libcuda.so.1')
  if (extraNeed) library(lib, extraNeed)
  library(cu13, 'libnvrtc-builtins.so.13.0')
  library(cu13, 'libnvrtc-builtins.alt.so.13.0')
  library(cu13, 'libnvrtc.so.13')
  library(cu13, 'libcudart.so.13')
  copyFileSync(join(cu13, 'libnvrtc.so.13'), join(lib, 'libnvrtc.so.13')) // only to link against; removed below
  library(lib, 'libcaffe2_nvrtc.so', ['libnvrtc.so.13', 'libcuda.so.1'], '$ORIGIN/../../nvidia/cu13/lib:$ORIGIN')
  rmSync(join(lib, 'libnvrtc.so.13'))
  library(lib, 'libc10.so')
  copyFileSync(join(cu13, 'libcudart.so.13'), join(lib, 'libcudart.so.13'))
  library(
    lib,
    'libtorch_cuda.so',
    ['libc10.so', 'libcudart.so.13', ...(extraNeed ? [extraNeed] : [])],
    '$ORIGIN/../../nvidia/cu13/lib:$ORIGIN',
  )
  rmSync(join(lib, 'libcudart.so.13'))
  rmSync(join(lib, 'libcuda.so.1'))
  if (extraNeed) rmSync(join(lib, extraNeed))
  library(lib, 'llamapro.node', ['libtorch_cuda.so'], lib)
  return { addon: join(lib, 'llamapro.node'), lib, cu13 }
}

t.test(
  'the dlopen chain of a CUDA LibTorch is bundled, and the absent GPU driver is listed, not refused',
  async (t) => {
    const root = t.testdir()
    const { addon, lib, cu13 } = fakeCudaTorch(root)
    const { bundled, system } = await collectLibraries(addon, { ...process.env, LD_LIBRARY_PATH: '' })
    t.same([...bundled.keys()].sort(), [
      'libc10.so',
      'libcaffe2_nvrtc.so',
      'libcudart.so.13',
      'libnvrtc-builtins.alt.so.13.0',
      'libnvrtc-builtins.so.13.0',
      'libnvrtc.so.13',
      'libtorch_cuda.so',
    ])
    t.equal(
      bundled.get('libnvrtc-builtins.so.13.0'),
      join(cu13, 'libnvrtc-builtins.so.13.0'),
      'found beside libnvrtc, which only libcaffe2_nvrtc links',
    )
    t.equal(bundled.get('libcaffe2_nvrtc.so'), join(lib, 'libcaffe2_nvrtc.so'))
    const cuda = system.find((s) => s.name === 'libcuda.so.1')
    t.ok(cuda, 'libcuda.so.1 is listed among the system libraries')
    t.notOk(bundled.has('libcuda.so.1'), 'and never bundled')
    if (!hasDriver) t.equal(cuda?.path, null, 'with no driver here, its path is null')

    // The copies, each with RUNPATH $ORIGIN, pass the relocatability check although libcuda.so.1 resolves nowhere.
    const out = join(root, 'bundle')
    mkdirSync(out)
    for (const [name, source] of [['llamapro.node', addon], ...bundled] as [string, string][]) {
      copyFileSync(source, join(out, name))
      await setRunpath(join(out, name), '$ORIGIN')
    }
    await t.resolves(checkRelocatable(out, ['llamapro.node', ...bundled.keys()]))
  },
)

t.test('a missing library that is not the driver is still an error that names it', async (t) => {
  const root = t.testdir()
  const { addon } = fakeCudaTorch(root, 'libcublas.so.13')
  await t.rejects(collectLibraries(addon, { ...process.env, LD_LIBRARY_PATH: '' }), {
    code: 'LLAMAPRO_BUNDLE',
    message: /the loader does not find libcublas\.so\.13 \(needed by the addon or one of its libraries\)/,
  })
})
