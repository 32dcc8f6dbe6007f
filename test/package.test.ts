import t from 'tap'
import { execFileSync, spawnSync } from 'node:child_process'
import { readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs'
import { join, relative } from 'node:path'
import { REPO_ROOT } from './helpers/python.js'

const TSC = join(REPO_ROOT, 'node_modules', '.bin', 'tsc')

function folderSize(path: string): number {
  const info = statSync(path)
  if (!info.isDirectory()) return info.size
  return readdirSync(path).reduce((sum, entry) => sum + folderSize(join(path, entry)), 0)
}

t.test('the package ships README.md and the manual (docs/), without docs/images', async (t) => {
  // --ignore-scripts: listing the files needs no build (prepack would run tsc).
  const [listing] = JSON.parse(
    execFileSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: REPO_ROOT, encoding: 'utf8' }),
  )
  const files: string[] = listing.files.map((file: { path: string }) => file.path)
  for (const file of ['README.md', 'docs/README.md', 'docs/install.md', 'docs/cli/train.md', 'docs/api.md'])
    t.ok(files.includes(file), `${file} ships`)
  t.same(
    files.filter((file) => file.startsWith('docs/images/')),
    [],
    'pictures stay in the repository',
  )
  t.same(
    files.filter((file) => file.startsWith('test/') || file.startsWith('bench/results/')),
    [],
    'tests and dated reports stay in the repository',
  )
})

/** Every file under `dir`, as paths relative to the repository. */
function filesUnder(dir: string): string[] {
  return readdirSync(join(REPO_ROOT, dir), { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? filesUnder(join(dir, e.name)) : [join(dir, e.name)],
  )
}

t.test('npm pack ships what a user needs to install, build and run, and nothing of the tests', async (t) => {
  // --ignore-scripts: dist/ is built already (npm test's pretest), and prepack would only rebuild it.
  const args = ['pack', '--dry-run', '--json', '--ignore-scripts']
  const dryRun = execFileSync('npm', args, { cwd: REPO_ROOT, encoding: 'utf8' })
  const [pack] = JSON.parse(dryRun)
  const files: { path: string; size: number }[] = pack.files
  const packed = new Set(files.map((f) => f.path))
  const manifest = JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8'))

  // What is needed, found from what refers to it rather than from package.json's "files".
  const sources = filesUnder('lib').filter((f) => f.endsWith('.ts'))
  // The board's browser code (tsconfig.client.json) is served to a page, not imported: JavaScript only.
  const browserOnly = (f: string) => f.startsWith('lib/board/client/')
  const compiled = sources.flatMap((f) =>
    (browserOnly(f) ? ['.js'] : ['.js', '.d.ts']).map((e) => `dist/${relative('lib', f).slice(0, -3)}${e}`),
  )
  const cmake = readFileSync(join(REPO_ROOT, 'CMakeLists.txt'), 'utf8')
  const installScript = /node (\S+\.mjs)/.exec(manifest.scripts.install)![1]!
  const installText = readFileSync(join(REPO_ROOT, installScript), 'utf8')
  const installImports = [...installText.matchAll(/from '\.\/([\w.-]+\.mjs)'/g)].map((m) => `scripts/${m[1]}`)
  const needed = [
    'package.json',
    'README.md',
    'CMakeLists.txt',
    ...compiled,
    ...Object.values(manifest.bin as Record<string, string>),
    ...filesUnder('native'),
    ...[...cmake.matchAll(/\$\{CMAKE_SOURCE_DIR\}\/(scripts\/[\w.-]+)/g)].map((m) => m[1]!),
    installScript,
    ...installImports,
    // bench --baseline python runs it, and it imports llama_ref
    'bench/reference/bench_train_step.py',
    'bench/reference/llama_ref.py',
  ]
  t.ok(compiled.length > 200 && installImports.length > 0, `${compiled.length} compiled files; ${installImports}`)
  t.same(
    needed.filter((f) => !packed.has(f)),
    [],
    'everything needed is in the package',
  )

  const outsideUse = /^(test|\.venv|build|node_modules|coverage|\.tap|bench\/results|lib)\//
  const unwanted = (path: string) => outsideUse.test(path) || /(^|\/)fixtures?\/|\.test\.[cm]?[jt]s$|\.tgz$/.test(path)
  const shipped = (test: (path: string) => boolean) => files.map((f) => f.path).filter(test)
  t.same(shipped(unwanted), [], 'no tests, fixtures, build outputs, results or TypeScript sources')
  const fromSources = new Set(sources.map((f) => relative('lib', f).slice(0, -3)))
  const source = (path: string) => path.slice('dist/'.length).replace(/(\.d)?\.ts$|\.js(\.map)?$/, '')
  t.same(
    shipped((path) => path.startsWith('dist/') && !fromSources.has(source(path))),
    [],
    'every file in dist/ is compiled from a lib/ source (none from a deleted one: rm -rf dist && npm run build:ts)',
  )
  t.same(
    files.filter((f) => f.size > 256 * 1024).map((f) => f.path),
    [],
    'no large file',
  )
  t.ok(pack.unpackedSize < 5 * 1024 * 1024, `${(pack.unpackedSize / 1e6).toFixed(1)} MB unpacked`)
})

t.test('npm pack gives a tarball that installs into an empty folder, builds, runs and type-checks', async (t) => {
  const dir = t.testdir({
    'package.json': JSON.stringify({ name: 'consumer', version: '1.0.0', private: true, type: 'module' }),
  })
  const packed = execFileSync('npm', ['pack', '--silent', '--pack-destination', dir], {
    cwd: REPO_ROOT,
    encoding: 'utf8',
  })
    .trim()
    .split('\n')
    .pop()!
  t.match(packed, /^llamapro-\d+\.\d+\.\d+\.tgz$/)
  // The install builds the addon: ~3 min against Debian's LibTorch, several times that against pip's torch 2.x on
  // a loaded 2-core machine (scripts/check-libtorch-wheel.sh --full). Up to tap's own timeout for this file, less a
  // margin.
  const installTimeout = Math.max(280_000, Number(process.env.TAP_TIMEOUT ?? 0) * 1000 - 20_000)
  execFileSync('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', `./${packed}`], {
    cwd: dir,
    stdio: 'pipe',
    timeout: installTimeout,
  })
  const info = JSON.parse(
    execFileSync('npx', ['--no-install', 'llamapro', 'info', '--json'], { cwd: dir, encoding: 'utf8' }),
  )
  t.match(info.libtorch.version, /^\d+\.\d+/, `npx llamapro info --json reports LibTorch ${info.libtorch.version}`)
  const installed = join(dir, 'node_modules', 'llamapro')
  t.same(readdirSync(join(installed, 'build', 'Release')), ['llamapro.node'], 'only the addon is kept from the build')
  t.ok(
    folderSize(installed) < 20 * 1024 * 1024,
    `the installed package is ${(folderSize(installed) / 1e6).toFixed(1)} MB`,
  )

  writeFileSync(
    join(dir, 'consumer.ts'),
    "import { info, LlamaModel } from 'llamapro'\nconst version: string = info().libtorch.version\nconst load: " +
      'typeof LlamaModel.load = LlamaModel.load\nconsole.log(version, typeof load)\n',
  )
  writeFileSync(
    join(dir, 'tsconfig.json'),
    JSON.stringify({
      compilerOptions: {
        module: 'NodeNext',
        moduleResolution: 'NodeNext',
        target: 'ES2022',
        strict: true,
        noEmit: true,
        types: [],
      },
      files: ['consumer.ts'],
    }),
  )
  const typecheck = spawnSync(TSC, ['-p', 'tsconfig.json'], { cwd: dir, encoding: 'utf8' })
  t.equal(typecheck.status, 0, `import { info } from 'llamapro' type-checks, without @types/node\n${typecheck.stdout}`)
})

t.test("the board's page and the modules it loads are in the package (npm pack --dry-run)", async (t) => {
  const packed = execFileSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], {
    cwd: REPO_ROOT,
    encoding: 'utf8',
  })
  const [report] = JSON.parse(packed) as [{ files: { path: string }[] }]
  const files = new Set(report.files.map((f) => f.path))
  for (const path of ['dist/board/server.js', 'dist/cli/board.js', 'dist/board/client/board.js']) {
    t.ok(files.has(path), `${path} is packed`)
  }
  // Every module the page loads: board.js and what it imports, transitively.
  const seen = new Set<string>()
  const visit = (path: string) => {
    if (seen.has(path)) return
    seen.add(path)
    for (const [, specifier] of readFileSync(join(REPO_ROOT, path), 'utf8').matchAll(
      /^(?:import|export)[^'"]*from '(\.[^']+)'/gm,
    ))
      visit(join(path, '..', specifier!))
  }
  visit('dist/board/client/board.js')
  t.ok(seen.has('dist/util/chart.js'), `the page loads the package's chart module (${[...seen].join(', ')})`)
  for (const path of seen) t.ok(files.has(path), `${path} is packed`)
})

t.test('LIBTORCH pointing nowhere fails the install with the variable and the path named', async (t) => {
  const result = spawnSync(process.execPath, [join(REPO_ROOT, 'scripts', 'install.mjs')], {
    cwd: REPO_ROOT,
    env: { ...process.env, LIBTORCH: '/nonexistent/libtorch' },
    encoding: 'utf8',
  })
  t.equal(result.status, 1)
  t.match(result.stderr, /LIBTORCH=\/nonexistent\/libtorch: no such folder/)
  t.notMatch(result.stdout, /building against/, 'nothing was built')
})
