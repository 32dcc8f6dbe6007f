/**
 * Block expansion of a >= 2 GB checkpoint, as ratios measured in one run on one machine:
 *   llamapro expand   vs  cp -r of the same folder                                      goal <= 2x
 *   llamapro expand   vs  the Python baseline (load every tensor, expand, save; as llama_pro.py)  goal >= 5x faster
 *   peak RSS of llamapro expand                                                         goal <= 256 MB
 * Usage: npm run build && npx tsx bench/expand.ts [--layers 18] [--runs 3] [--dir /tmp/llamapro-bench-expand]
 */
import { rmSync } from 'node:fs'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { describeMachine, machineInfo } from '../lib/bench/machine.js'
import { writeBigCheckpoint } from './lib/big-checkpoint.js'
import { measureCommand, median, timeCommand } from './lib/measure.js'
import { writeResult } from './lib/results.js'

const { values } = parseArgs({
  options: {
    layers: { type: 'string', default: '20' },
    runs: { type: 'string', default: '3' },
    dir: { type: 'string', default: '/tmp/llamapro-bench-expand' },
  },
})
const [layers, runs, dir] = [Number(values.layers), Number(values.runs), values.dir!]
const python = join(process.cwd(), '.venv', 'bin', 'python')
rmSync(dir, { recursive: true, force: true })
const source = join(dir, 'model')
const bytes = await writeBigCheckpoint(source, layers, 1_000_000_000)
console.log(`checkpoint: ${(bytes / 1e9).toFixed(2)} GB float16, ${layers} layers, in ${source}`)
timeCommand(`cat ${source}/* > /dev/null`)

const expandRuns: { seconds: number; peakRss: number; stdout: string }[] = []
const cpRuns: number[] = []
const pythonRuns: { seconds: number; peakRss: number }[] = []
for (let i = 0; i < runs; i++) {
  for (const out of ['expanded', 'copied', 'python']) rmSync(join(dir, out), { recursive: true, force: true })
  // Each measurement starts with no dirty pages left by the previous one: writeback would otherwise land on it.
  timeCommand('sync')
  expandRuns.push(
    measureCommand(
      `node dist/cli/main.js expand ${source} ${join(dir, 'expanded')} --num-expand 2 --shard-size 1GB --json`,
    ),
  )
  timeCommand('sync')
  cpRuns.push(timeCommand(`cp -r ${source} ${join(dir, 'copied')}`))
  timeCommand('sync')
  pythonRuns.push(
    measureCommand(
      `${python} bench/reference/llama_pro_baseline.py ${source} ${join(dir, 'python')} 2 --shard-size 1000000000`,
    ),
  )
}
const expand = median(expandRuns.map((r) => r.seconds))
const cp = median(cpRuns)
const py = median(pythonRuns.map((r) => r.seconds))
const rss = Math.max(...expandRuns.map((r) => r.peakRss))
const pyRss = Math.max(...pythonRuns.map((r) => r.peakRss))
const outBytes = JSON.parse(expandRuns[0]!.stdout).bytesWritten as number

const machine = machineInfo()
const result = {
  benchmark: 'expand',
  command: `npm run build && npx tsx bench/expand.ts --layers ${layers} --runs ${runs}`,
  machine,
  checkpointBytes: bytes,
  outputBytes: outBytes,
  seconds: { expand, cp, python: py },
  peakRss: { expand: rss, python: pyRss },
  ratios: { expandVsCp: expand / cp, pythonVsExpand: py / expand },
  goals: { expandVsCp: 2, pythonVsExpand: 5, peakRssBytes: 256 * 2 ** 20 },
}
const met = (ok: boolean) => (ok ? 'met' : 'missed')
const md = [
  '# Block expansion (`llamapro expand`)',
  '',
  `Machine: ${describeMachine(machine)}`,
  `Command: \`${result.command}\``,
  `Input: ${(bytes / 1e9).toFixed(2)} GB float16 checkpoint (${layers} layers of width 2048, 1 GB shards); output ` +
    `${(outBytes / 1e9).toFixed(2)} GB with 2 new blocks. Page cache warm. Medians of ${runs} runs; wall time of ` +
    `whole processes.`,
  '',
  '| measure | value | goal |',
  '|---|---|---|',
  `| llamapro expand | ${expand.toFixed(2)} s | |`,
  `| \`cp -r\` of the input folder | ${cp.toFixed(2)} s | |`,
  `| expand / cp | ${result.ratios.expandVsCp.toFixed(2)} | <= 2 ${met(result.ratios.expandVsCp <= 2)} |`,
  `| Python baseline (load all, expand, save; llama_pro.py's method) | ${py.toFixed(2)} s, peak RSS ` +
    `${(pyRss / 2 ** 30).toFixed(2)} GiB | |`,
  `| Python / llamapro | ${result.ratios.pythonVsExpand.toFixed(2)}x faster | >= 5 ` +
    `${met(result.ratios.pythonVsExpand >= 5)} |`,
  `| peak RSS of llamapro expand | ${(rss / 2 ** 20).toFixed(0)} MiB | <= 256 MiB ${met(rss <= 256 * 2 ** 20)} |`,
].join('\n')
await writeResult('expand', result, md)
console.log(md)
rmSync(dir, { recursive: true, force: true })
