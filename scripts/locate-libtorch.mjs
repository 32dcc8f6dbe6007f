// Finds the LibTorch that llamapro's addon is built against, in a fixed order, and says which one it took.
//
//   1. LIBTORCH            a libtorch folder (the zip from pytorch.org, or any install prefix)
//   2. Torch_DIR           a folder holding TorchConfig.cmake;  CMAKE_PREFIX_PATH  prefixes searched for it
//   3. python3's torch     torch.utils.cmake_prefix_path of the `torch` installed for python3 ($LLAMAPRO_PYTHON)
//   4. the system          Debian's libtorch-dev: /usr/lib/<triplet>/cmake/Torch
//
// An explicitly named location that does not hold LibTorch is an error naming the variable and the path:
// a silent fallback would build against a LibTorch the user did not ask for.
// Plain JavaScript (not TypeScript) because it runs at `npm install`, before anything is compiled.
import { execFileSync } from 'node:child_process'
import { existsSync, readdirSync, statSync } from 'node:fs'
import { delimiter, join, resolve } from 'node:path'

export class LibTorchNotFoundError extends Error {
  constructor(message) {
    super(message)
    this.name = 'LibTorchNotFoundError'
    this.code = 'LLAMAPRO_LIBTORCH_NOT_FOUND'
  }
}

const CONFIG_FILE = 'TorchConfig.cmake'

const isDir = (p) => {
  try {
    return statSync(p).isDirectory()
  } catch {
    return false
  }
}

/** The folder holding TorchConfig.cmake under an install prefix, or undefined. */
export function torchCmakeDirUnder(prefix) {
  const candidates = [
    prefix,
    join(prefix, 'Torch'),
    join(prefix, 'share', 'cmake', 'Torch'),
    join(prefix, 'lib', 'cmake', 'Torch'),
    join(prefix, 'lib64', 'cmake', 'Torch'),
  ]
  return candidates.find((dir) => existsSync(join(dir, CONFIG_FILE)))
}

function fromLibtorchVariable(path) {
  const dir = resolve(path)
  if (!isDir(dir)) {
    throw new LibTorchNotFoundError(
      `LIBTORCH=${path}: no such folder. Point LIBTORCH at an unpacked libtorch folder ` +
        `(the one holding share/cmake/Torch/${CONFIG_FILE}), or unset it to search elsewhere.`,
    )
  }
  const cmakeDir = torchCmakeDirUnder(dir)
  if (!cmakeDir) {
    throw new LibTorchNotFoundError(
      `LIBTORCH=${path}: the folder exists but holds no LibTorch (looked for share/cmake/Torch/${CONFIG_FILE}). ` +
        `Point LIBTORCH at the top of an unpacked libtorch folder, or unset it.`,
    )
  }
  return { source: 'LIBTORCH', cmakeDir }
}

function fromTorchDirVariable(path) {
  const dir = resolve(path)
  if (!existsSync(join(dir, CONFIG_FILE))) {
    throw new LibTorchNotFoundError(
      `Torch_DIR=${path}: no ${CONFIG_FILE} there. Torch_DIR must be the folder holding ${CONFIG_FILE} ` +
        `(for a libtorch folder: <libtorch>/share/cmake/Torch), or unset it.`,
    )
  }
  return { source: 'Torch_DIR', cmakeDir: dir }
}

function fromCmakePrefixPath(value) {
  for (const prefix of value.split(delimiter).filter(Boolean)) {
    const cmakeDir = torchCmakeDirUnder(resolve(prefix))
    if (cmakeDir) return { source: 'CMAKE_PREFIX_PATH', cmakeDir }
  }
  return undefined
}

const PYTHON_PROBE =
  'import json, torch, torch.utils; print(json.dumps({"prefix": torch.utils.cmake_prefix_path, "version": ' +
  'torch.__version__}))'

function fromPython(python, run) {
  let out
  try {
    out = run(python, ['-c', PYTHON_PROBE])
  } catch {
    return undefined // no python3, or no torch for it: try the next way
  }
  let probe
  try {
    probe = JSON.parse(String(out).trim().split('\n').pop())
  } catch {
    return undefined
  }
  const cmakeDir = torchCmakeDirUnder(probe.prefix)
  return cmakeDir ? { source: 'python3', cmakeDir, detail: `${python}: torch ${probe.version}` } : undefined
}

function fromSystem(roots) {
  for (const root of roots) {
    const direct = join(root, 'cmake', 'Torch')
    if (existsSync(join(direct, CONFIG_FILE))) return { source: 'system', cmakeDir: direct }
    if (!isDir(root)) continue
    for (const entry of readdirSync(root)) {
      const dir = join(root, entry, 'cmake', 'Torch') // /usr/lib/x86_64-linux-gnu/cmake/Torch
      if (existsSync(join(dir, CONFIG_FILE))) return { source: 'system', cmakeDir: dir }
    }
  }
  return undefined
}

const defaultRun = (cmd, args) =>
  execFileSync(cmd, args, { encoding: 'utf8', timeout: 60_000, stdio: ['ignore', 'pipe', 'ignore'] })

export const SYSTEM_ROOTS = ['/usr/lib', '/usr/local/lib', '/usr/lib64', '/usr/local/share', '/usr/share']

/**
 * Returns { source, cmakeDir, detail? }; throws LibTorchNotFoundError.
 * `env`, `run` and `systemRoots` are injectable so the order can be tested without touching the machine.
 */
export function locateLibTorch({ env = process.env, run = defaultRun, systemRoots = SYSTEM_ROOTS } = {}) {
  if (env.LIBTORCH) return fromLibtorchVariable(env.LIBTORCH)
  if (env.Torch_DIR) return fromTorchDirVariable(env.Torch_DIR)
  if (env.CMAKE_PREFIX_PATH) {
    const found = fromCmakePrefixPath(env.CMAKE_PREFIX_PATH)
    if (found) return found
  }
  const python = env.LLAMAPRO_PYTHON || 'python3'
  const found = fromPython(python, run) ?? fromSystem(systemRoots)
  if (found) return found
  throw new LibTorchNotFoundError(
    [
      'llamapro: no LibTorch found. Give it one of these ways (searched in this order):',
      '  1. LIBTORCH=/path/to/libtorch        an unpacked libtorch folder from pytorch.org',
      '  2. Torch_DIR=/path/to/share/cmake/Torch  (or a prefix holding it in CMAKE_PREFIX_PATH)',
      `  3. a torch installed for ${python}    (pip install torch; set LLAMAPRO_PYTHON to use another interpreter)`,
      '  4. the system package                on Debian/Ubuntu: npm run setup  (installs libtorch-dev and',
      '                                       libopenblas0-pthread), or apt-get install both yourself',
    ].join('\n'),
  )
}
