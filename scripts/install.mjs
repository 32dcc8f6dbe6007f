#!/usr/bin/env node
// `npm install` hook: finds LibTorch (scripts/locate-libtorch.mjs), says which one it took, and builds the
// addon with cmake-js against it. Nothing is downloaded: Node-API headers come from node-api-headers.
//
// Environment: LIBTORCH, Torch_DIR, CMAKE_PREFIX_PATH, LLAMAPRO_PYTHON (see locate-libtorch.mjs);
// LLAMAPRO_BUILD_JOBS (parallel compile jobs, default: the number of CPUs);
// LLAMAPRO_DEBUG_BUILD=1 for a debug build; LLAMAPRO_CPU_ONLY=1 links only LibTorch's CPU libraries.
import { spawnSync } from 'node:child_process'
import { mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { availableParallelism } from 'node:os'
import { dirname, join, sep } from 'node:path'
import { fileURLToPath } from 'node:url'
import { locateLibTorch } from './locate-libtorch.mjs'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const require = createRequire(join(root, 'package.json'))

function fail(message) {
  console.error(message)
  process.exit(1)
}

let found
try {
  found = locateLibTorch()
} catch (error) {
  fail(error.message)
}
console.log(
  `llamapro: building against LibTorch from ${found.source}: ${found.cmakeDir}` +
    (found.detail ? ` (${found.detail})` : ''),
)

const cmakeJs = join(dirname(require.resolve('cmake-js/package.json')), 'bin', 'cmake-js')
const addonApiDir = require('node-addon-api').include.replace(/"/g, '')
const jobs = Number(process.env.LLAMAPRO_BUILD_JOBS) || availableParallelism()
const args = [
  cmakeJs,
  'compile',
  '--directory',
  root,
  '--parallel',
  String(jobs),
  `--CDTorch_DIR=${found.cmakeDir}`,
  `--CDNODE_ADDON_API_DIR=${addonApiDir}`,
]
if (process.env.LLAMAPRO_DEBUG_BUILD === '1') args.push('--debug')
args.push(`--CDLLAMAPRO_CPU_ONLY=${process.env.LLAMAPRO_CPU_ONLY === '1' ? 'ON' : 'OFF'}`) // explicit: CMake caches options

const result = spawnSync(process.execPath, args, { stdio: 'inherit', cwd: root })
if (result.error) fail(`llamapro: could not run cmake-js: ${result.error.message}`)
if (result.status !== 0) {
  fail(
    `llamapro: building the native addon against ${found.cmakeDir} failed (cmake-js exit ${result.status}).\n` +
      'It needs cmake >= 3.18 and a C++17 compiler (C++20 for recent LibTorch 2.x); the messages above say what went ' +
      'wrong.',
  )
}

mkdirSync(join(root, 'build'), { recursive: true })
writeFileSync(
  join(root, 'build', 'libtorch.json'),
  `${JSON.stringify({ source: found.source, cmakeDir: found.cmakeDir, detail: found.detail ?? null }, null, 2)}\n`,
)

// Installed as a dependency, only the addon is needed: drop the object files and the precompiled header
// (hundreds of MB). A development checkout keeps them for fast incremental rebuilds.
if (root.includes(`${sep}node_modules${sep}`)) {
  const build = join(root, 'build')
  for (const entry of readdirSync(build)) {
    if (entry !== 'Release' && entry !== 'libtorch.json') rmSync(join(build, entry), { recursive: true, force: true })
  }
  for (const entry of readdirSync(join(build, 'Release'))) {
    if (entry !== 'llamapro.node') rmSync(join(build, 'Release', entry), { recursive: true, force: true })
  }
}
