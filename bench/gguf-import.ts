/**
 * `llamapro import` of SmolLM2-135M-Instruct (98 MB GGUF, Q4_1 + Q8_0), as ratios measured in one run:
 *   import time                  vs  reading the GGUF (cat > /dev/null, page cache warm)
 *   import time                  vs  writing as many bytes as the import writes (head -c N /dev/zero)
 *   import time                  vs  the gguf package dequantizing every tensor in memory (numpy, no output)
 *   peak RSS of the import       vs  the same process before importing (Node + LibTorch libraries)
 * Usage: scripts/fetch-smollm2.sh && npm run build && npx tsx bench/gguf-import.ts [--runs 3] [--dir
 * /tmp/llamapro-bench-gguf]
 */
import { rmSync, statSync } from 'node:fs'
import { homedir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { describeMachine, machineInfo } from '../lib/bench/machine.js'
import { measureCommand, median, timeCommand } from './lib/measure.js'
import { writeResult } from './lib/results.js'

const { values } = parseArgs({
  options: { runs: { type: 'string', default: '3' }, dir: { type: 'string', default: '/tmp/llamapro-bench-gguf' } },
})
const runs = Number(values.runs)
const dir = values.dir!
const gguf = join(
  process.env.LLAMAPRO_CACHE ?? join(homedir(), '.cache', 'llamapro'),
  'smollm2',
  'SmolLM2-135M-Instruct.Q4_1.gguf',
)
const size = statSync(gguf).size
rmSync(dir, { recursive: true, force: true })
const cli = join(process.cwd(), 'dist', 'cli', 'main.js')

timeCommand(`cat ${gguf} > /dev/null`)
const cat = median(Array.from({ length: runs }, () => timeCommand(`cat ${gguf} > /dev/null`)))

// The resident baseline: the same Node process with the addon loaded, before any import.
const idle = measureCommand(
  `node --input-type=module --eval "import { info } from '${join(process.cwd(), 'dist', 'index.js')}'; info()"`,
)

const rows: { dtype: string; seconds: number; peakRss: number; outBytes: number; writeSeconds: number }[] = []
for (const dtype of ['float32', 'bfloat16']) {
  const seconds: number[] = []
  let peakRss = 0
  let outBytes = 0
  for (let i = 0; i < runs; i++) {
    const out = join(dir, dtype)
    rmSync(out, { recursive: true, force: true })
    timeCommand('sync')
    const m = measureCommand(`node ${cli} import ${gguf} ${out} --dtype ${dtype}`)
    seconds.push(m.seconds)
    peakRss = Math.max(peakRss, m.peakRss)
    outBytes = statSync(join(out, 'model.safetensors')).size
  }
  // The I/O floor of the output: writing as many bytes (zeros) to a new file in the same folder.
  const writes = Array.from({ length: runs }, () => {
    rmSync(join(dir, 'zeros'), { force: true })
    timeCommand('sync')
    return timeCommand(`head -c ${outBytes} /dev/zero > ${join(dir, 'zeros')}`)
  })
  rows.push({ dtype, seconds: median(seconds), peakRss, outBytes, writeSeconds: median(writes) })
}

const python = join(process.cwd(), '.venv', 'bin', 'python')
const numpy = median(
  Array.from({ length: runs }, () =>
    measureCommand(
      `${python} -c "from gguf import GGUFReader; from gguf.quants import dequantize; r = GGUFReader('${gguf}'); ` +
        `[dequantize(t.data, t.tensor_type) for t in r.tensors]"`,
    ),
  ).map((m) => m.seconds),
)
rmSync(dir, { recursive: true, force: true })

const mb = (b: number) => `${(b / 1e6).toFixed(0)} MB`
const s = (x: number) => `${x.toFixed(2)} s`
const machine = machineInfo()
const table = [
  '| measure | llamapro | baseline | ratio |',
  '|---|---|---|---|',
  ...rows.flatMap((r) => [
    `| import --dtype ${r.dtype} (writes ${mb(r.outBytes)}) vs \`cat\` of the GGUF | ${s(r.seconds)} | ${s(cat)} | ` +
      `${(r.seconds / cat).toFixed(1)} |`,
    `| import --dtype ${r.dtype} vs writing ${mb(r.outBytes)} of zeros (\`head -c\`) | ${s(r.seconds)} | ` +
      `${s(r.writeSeconds)} | ${(r.seconds / r.writeSeconds).toFixed(1)} |`,
    `| import --dtype ${r.dtype} vs gguf (numpy) dequantizing all tensors, no output | ${s(r.seconds)} | ${s(numpy)} ` +
      `| ${(r.seconds / numpy).toFixed(2)} |`,
    `| peak RSS of the import (${r.dtype}) vs the idle process | ${mb(r.peakRss)} | ${mb(idle.peakRss)} | ` +
      `${(r.peakRss / idle.peakRss).toFixed(2)} |`,
  ]),
]
const markdown = [
  '# GGUF import',
  '',
  `Machine: ${describeMachine(machine)}`,
  `Command: \`npx tsx bench/gguf-import.ts --runs ${runs}\``,
  `File: SmolLM2-135M-Instruct.Q4_1.gguf, ${mb(size)} (210 Q4_1, 1 Q8_0, 61 F32 tensors; 135M parameters). Medians ` +
    `of ${runs} runs; times include Node's start-up.`,
  '',
  ...table,
  '',
  'Memory is bounded by design: tensors are converted in chunks of at most 4M values (16 MB of float32) from file',
  'to file, so the peak above the idle process is the tokenizer metadata (49k tokens, 49k merges) and the chunk',
  'buffers, whatever the model size; the output is never held in memory.',
].join('\n')
console.log(markdown)
await writeResult(
  'gguf-import',
  { machine, file: gguf, fileBytes: size, runs, catSeconds: cat, numpySeconds: numpy, idleRss: idle.peakRss, rows },
  markdown,
)
