/** Timing helpers for the benchmark scripts: medians of repeated runs, commands timed as child processes. */
import { spawnSync } from 'node:child_process'

export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  const mid = Math.floor(sorted.length / 2)
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2
}

export async function timeIt(fn: () => Promise<unknown> | unknown): Promise<number> {
  const start = performance.now()
  await fn()
  return (performance.now() - start) / 1000
}

/** Runs a shell command and returns its wall time in seconds; throws if it fails. */
export function timeCommand(command: string): number {
  const start = performance.now()
  const result = spawnSync('bash', ['-c', command], { stdio: ['ignore', 'ignore', 'pipe'] })
  if (result.status !== 0) throw new Error(`${command} failed: ${result.stderr}`)
  return (performance.now() - start) / 1000
}

/** Runs a command under GNU time and returns its wall time and peak RSS (bytes). */
export function measureCommand(
  command: string,
  env: NodeJS.ProcessEnv = process.env,
): { seconds: number; peakRss: number; stdout: string } {
  const start = performance.now()
  const result = spawnSync('/usr/bin/time', ['-f', 'PEAK_RSS_KB %M', 'bash', '-c', command], {
    env,
    encoding: 'utf8',
    maxBuffer: 64 * 1024 * 1024,
  })
  const seconds = (performance.now() - start) / 1000
  if (result.status !== 0) throw new Error(`${command} failed (${result.status}): ${result.stderr}`)
  const kb = Number(/PEAK_RSS_KB (\d+)/.exec(result.stderr)?.[1])
  return { seconds, peakRss: kb * 1024, stdout: result.stdout }
}
