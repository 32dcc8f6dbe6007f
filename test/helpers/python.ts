/**
 * Runs the Python references (Debian's python3-torch plus PyPI safetensors/numpy/tokenizers in .venv, which
 * `npm run setup` creates). Tests that compare with PyTorch fail, never skip, when that interpreter is missing:
 * a skipped comparison would hide exactly the failures it exists to catch.
 */
import { execFile } from 'node:child_process'
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

export const REPO_ROOT = fileURLToPath(new URL('../..', import.meta.url))

export function pythonPath(): string {
  const configured = process.env.LLAMAPRO_TEST_PYTHON
  if (configured) return configured
  const venv = join(REPO_ROOT, '.venv', 'bin', 'python')
  if (existsSync(venv)) return venv
  throw new Error(
    `no Python for the reference checks: ${venv} is missing. Run \`npm run setup\` (Debian) or create it with ` +
      '`/usr/bin/python3 -m venv --system-site-packages .venv && .venv/bin/pip install safetensors numpy tokenizers` ' +
      '(the system python3 must have torch), or set LLAMAPRO_TEST_PYTHON.',
  )
}

export function runPython(args: string[], input?: string, timeoutMs = 120_000): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = execFile(
      pythonPath(),
      args,
      { cwd: REPO_ROOT, timeout: timeoutMs, maxBuffer: 512 * 1024 * 1024 },
      (error, stdout, stderr) => {
        if (error) reject(new Error(`python ${args.join(' ')} failed: ${error.message}\n${stderr}`))
        else resolve(stdout)
      },
    )
    if (input !== undefined) child.stdin!.end(input)
  })
}

export async function runPythonJson<T>(args: string[], input?: string): Promise<T> {
  const out = await runPython(args, input)
  return JSON.parse(out) as T
}

/** Runs an inline Python snippet; it reads JSON from stdin and prints JSON. */
export function pythonSnippet<T>(code: string, input: unknown): Promise<T> {
  return runPythonJson<T>(['-c', code], JSON.stringify(input))
}
