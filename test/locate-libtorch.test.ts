import t from 'tap'
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
// @ts-expect-error plain ESM JavaScript without type declarations (it runs before TypeScript is compiled)
import { locateLibTorch, LibTorchNotFoundError } from '../scripts/locate-libtorch.mjs'

type Found = { source: string; cmakeDir: string; detail?: string }
const locate = locateLibTorch as (o: {
  env: Record<string, string>
  run?: (cmd: string, args: string[]) => string
  systemRoots?: string[]
}) => Found

function fakeTorch(root: string, sub = join('share', 'cmake', 'Torch')): string {
  const dir = join(root, sub)
  mkdirSync(dir, { recursive: true })
  writeFileSync(join(dir, 'TorchConfig.cmake'), '# fake\n')
  return dir
}

const noPython = () => {
  throw new Error('python3: not found')
}

t.test('LIBTORCH wins over everything else', async (t) => {
  const root = t.testdir()
  const libtorch = join(root, 'libtorch')
  const expected = fakeTorch(libtorch)
  const other = fakeTorch(join(root, 'other'))
  const found = locate({ env: { LIBTORCH: libtorch, Torch_DIR: other }, run: noPython, systemRoots: [] })
  t.same(found, { source: 'LIBTORCH', cmakeDir: expected })
})

t.test('a LIBTORCH that points nowhere is an error naming the variable and the path, not a fallback', async (t) => {
  const root = t.testdir()
  const system = join(root, 'usr', 'lib')
  fakeTorch(join(system, 'x86_64-linux-gnu'), join('cmake', 'Torch'))
  t.throws(() => locate({ env: { LIBTORCH: '/nonexistent/libtorch' }, run: noPython, systemRoots: [system] }), {
    message: /LIBTORCH=\/nonexistent\/libtorch: no such folder/,
  })
  const empty = join(root, 'empty')
  mkdirSync(empty)
  t.throws(() => locate({ env: { LIBTORCH: empty }, run: noPython, systemRoots: [system] }), {
    message: new RegExp(`LIBTORCH=${empty}: the folder exists but holds no LibTorch`),
  })
})

t.test('Torch_DIR, then CMAKE_PREFIX_PATH', async (t) => {
  const root = t.testdir()
  const direct = fakeTorch(join(root, 'a'))
  t.same(locate({ env: { Torch_DIR: direct }, run: noPython, systemRoots: [] }), {
    source: 'Torch_DIR',
    cmakeDir: direct,
  })
  t.throws(() => locate({ env: { Torch_DIR: join(root, 'missing') }, run: noPython, systemRoots: [] }), {
    message: /Torch_DIR=.*no TorchConfig.cmake/,
  })
  const prefixed = fakeTorch(join(root, 'prefix'))
  t.same(
    locate({
      env: { CMAKE_PREFIX_PATH: `${join(root, 'nothing')}:${join(root, 'prefix')}` },
      run: noPython,
      systemRoots: [],
    }),
    {
      source: 'CMAKE_PREFIX_PATH',
      cmakeDir: prefixed,
    },
  )
})

t.test("python3's torch comes before the system, and LLAMAPRO_PYTHON picks the interpreter", async (t) => {
  const root = t.testdir()
  const pythonTorch = fakeTorch(join(root, 'site-packages', 'torch'), join('share', 'cmake', 'Torch'))
  const system = join(root, 'usr', 'lib')
  fakeTorch(join(system, 'x86_64-linux-gnu'), join('cmake', 'Torch'))
  const calls: string[] = []
  const run = (cmd: string) => {
    calls.push(cmd)
    return JSON.stringify({ prefix: join(root, 'site-packages', 'torch', 'share', 'cmake'), version: '2.11.0+cu130' })
  }
  const found = locate({ env: { LLAMAPRO_PYTHON: '/opt/py/bin/python3' }, run, systemRoots: [system] })
  t.same(found, { source: 'python3', cmakeDir: pythonTorch, detail: '/opt/py/bin/python3: torch 2.11.0+cu130' })
  t.same(calls, ['/opt/py/bin/python3'])
})

t.test('the system CMake config is the last resort', async (t) => {
  const root = t.testdir()
  const system = join(root, 'usr', 'lib')
  const expected = fakeTorch(join(system, 'x86_64-linux-gnu'), join('cmake', 'Torch'))
  t.same(locate({ env: {}, run: noPython, systemRoots: [system] }), { source: 'system', cmakeDir: expected })
})

t.test('nothing found: one error listing the four ways', async (t) => {
  const root = t.testdir()
  const error = t.throws(() => locate({ env: {}, run: noPython, systemRoots: [root] })) as Error
  t.ok(error instanceof (LibTorchNotFoundError as typeof Error))
  for (const way of ['LIBTORCH=', 'Torch_DIR=', 'a torch installed for python3', 'npm run setup'])
    t.match(error.message, way)
})
