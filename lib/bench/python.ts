/**
 * The Python interpreter for `bench --baseline python`: one that can `import torch`. LLAMAPRO_PYTHON (or the
 * `python` option) is taken as the user's choice and only checked; otherwise the setup's `.venv`, Debian's
 * `/usr/bin/python3` and `python3` on PATH are tried in that order, since the first `python3` on PATH (pyenv,
 * conda, a project venv) often has no torch.
 */
import { execFile } from 'node:child_process'
import { join } from 'node:path'
import { LlamaproError } from '../errors.js'

export interface PythonCandidate {
  path: string
  /** Where the candidate came from, for messages: "LLAMAPRO_PYTHON", "the setup's .venv", ... */
  source: string
}

export interface TorchPython extends PythonCandidate {
  torchVersion: string
}

/** The interpreters to try, in order. An explicit choice (option or LLAMAPRO_PYTHON) is the only candidate. */
export function pythonCandidates(options: {
  explicit?: string
  env?: NodeJS.ProcessEnv
  packageRoot: string
}): PythonCandidate[] {
  const env = options.env ?? process.env
  if (options.explicit) return [{ path: options.explicit, source: 'the python option' }]
  if (env.LLAMAPRO_PYTHON) return [{ path: env.LLAMAPRO_PYTHON, source: 'LLAMAPRO_PYTHON' }]
  const candidates = [
    { path: join(options.packageRoot, '.venv', 'bin', 'python'), source: "the setup's .venv" },
    { path: '/usr/bin/python3', source: "the system's python3" },
    { path: 'python3', source: 'python3 on PATH' },
  ]
  return candidates.filter((c, i) => candidates.findIndex((d) => d.path === c.path) === i)
}

/** `import torch` in `python`: its version, or why not (the last line of the error, or "not found"). */
export function probeTorch(
  python: string,
  timeoutMs = 60_000,
): Promise<{ ok: true; version: string } | { ok: false; why: string }> {
  return new Promise((resolve) => {
    execFile(
      python,
      ['-c', 'import torch; print(torch.__version__)'],
      { timeout: timeoutMs },
      (error, stdout, stderr) => {
        if (!error) return resolve({ ok: true, version: stdout.trim() })
        const code = (error as NodeJS.ErrnoException).code
        if (code === 'ENOENT') return resolve({ ok: false, why: 'not found' })
        if (code === 'EACCES') return resolve({ ok: false, why: 'not executable' })
        const last = stderr.trim().split('\n').at(-1)
        resolve({ ok: false, why: last || error.message })
      },
    )
  })
}

/** The first candidate that has torch, or an error listing what was tried and how to choose one. */
export async function findTorchPython(options: {
  explicit?: string
  env?: NodeJS.ProcessEnv
  packageRoot: string
}): Promise<TorchPython> {
  const tried: string[] = []
  for (const candidate of pythonCandidates(options)) {
    const probe = await probeTorch(candidate.path)
    if (probe.ok) return { ...candidate, torchVersion: probe.version }
    tried.push(`${candidate.path} (${candidate.source}): ${probe.why}`)
  }
  throw new LlamaproError(
    'LLAMAPRO_PYTHON',
    `--baseline python needs a Python interpreter that can import torch; tried:\n  ${tried.join('\n  ')}\n` +
      'Choose one with LLAMAPRO_PYTHON=/path/to/python (e.g. a venv where `pip install torch` was run), ' +
      "or create the setup's .venv with `npm run setup` (Debian: python3-torch).",
  )
}
