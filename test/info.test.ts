import t from 'tap'
import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { basename, join } from 'node:path'
import { info } from '../lib/index.js'
import { VERSION } from '../lib/version.js'
import { REPO_ROOT } from './helpers/python.js'

const CLI = join(REPO_ROOT, 'dist', 'cli', 'main.js')

t.test('info() reports the LibTorch it runs on', async (t) => {
  const data = info()
  t.equal(data.llamapro.version, VERSION)
  t.match(data.libtorch.version, /^\d+\.\d+/)
  t.match(data.libtorch.library, /libtorch/)
  t.type(data.cuda.available, 'boolean')
  t.ok(data.threads.intraOp >= 1)
  t.ok(Array.isArray(data.warnings))
})

t.test('the BLAS reported is the CPU BLAS mapped in this process, never a GPU BLAS', async (t) => {
  const data = info()
  t.not(data.blas.name, '', `named: ${data.blas.name}`)
  if (data.blas.library === '') {
    // pip's torch links MKL into libtorch_cpu: no BLAS file of its own, the name comes from the build configuration
    t.equal(data.blas.name, 'MKL')
    return
  }
  const mapped = readFileSync('/proc/self/maps', 'utf8')
    .split('\n')
    .map((l) => l.slice(l.indexOf('/')))
    .filter((p) => p.startsWith('/'))
  t.ok(mapped.includes(data.blas.library), `${data.blas.library} is mapped`)
  // A CUDA LibTorch maps libcublas/libcublasLt too; they once were reported as the BLAS.
  t.match(basename(data.blas.library), /^lib(open)?blas|^libmkl/)
})

t.test('llamapro info --json prints the same data', async (t) => {
  const out = JSON.parse(execFileSync(process.execPath, [CLI, 'info', '--json'], { encoding: 'utf8' }))
  t.equal(out.libtorch.version, info().libtorch.version)
  t.equal(out.llamapro.version, VERSION)
})

t.test('llamapro info prints a readable summary; a bad flag is a usage error (exit 2)', async (t) => {
  const text = execFileSync(process.execPath, [CLI, 'info'], { encoding: 'utf8' })
  t.match(text, /libtorch\s+\d+\.\d+/)
  t.match(text, /threads\s+intra-op/)
  t.match(
    text,
    /kernels\s+gemm (onednn|blas), fused attention (on|off), row plan (on|off), CPU cache (on|off), op profile (off|cpu|wall)/,
  )
  try {
    execFileSync(process.execPath, [CLI, 'info', '--bogus'], { encoding: 'utf8', stdio: 'pipe' })
    t.fail('should exit non-zero')
  } catch (error) {
    const e = error as { status: number; stderr: string }
    t.equal(e.status, 2)
    t.match(e.stderr, /Unknown option '--bogus'/)
  }
})

t.test('an unknown command lists the commands', async (t) => {
  try {
    execFileSync(process.execPath, [CLI, 'frobnicate'], { encoding: 'utf8', stdio: 'pipe' })
    t.fail('should exit non-zero')
  } catch (error) {
    const e = error as { status: number; stderr: string }
    t.equal(e.status, 2)
    t.match(e.stderr, /unknown command 'frobnicate'.*info/)
  }
})
