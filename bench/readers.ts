/**
 * Reading throughput of the dataset readers (lib/data/readers/), MB of file per second, each format made from the
 * same records by the Python packages users write them with (pyarrow, pandas, `datasets`), plus the parquet
 * candidates side by side: parquet-wasm (what llamapro uses: row group by row group from a file-backed Blob,
 * decoded in WebAssembly, rows through apache-arrow) and hyparquet (pure JavaScript, row group by row group). Runs
 * alternate
 * (A B A B …) so a loaded machine slows both alike; the median is reported. Includes turning rows into examples.
 * Usage: npx tsx bench/readers.ts [--mb 80] [--runs 3] [--dir /tmp/llamapro-bench-readers]
 */
import { execFileSync } from 'node:child_process'
import { mkdirSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { readParquet as readHyparquet } from './lib/hyparquet-reader.js'
import { describeMachine, machineInfo } from '../lib/bench/machine.js'
import { resolveDatasets, streamExamples } from '../lib/data/dataset.js'
import { median, timeIt } from './lib/measure.js'
import { writeResult } from './lib/results.js'

const { values } = parseArgs({
  options: {
    mb: { type: 'string', default: '80' },
    runs: { type: 'string', default: '3' },
    dir: { type: 'string', default: '/tmp/llamapro-bench-readers' },
  },
})
const dir = values.dir!
const runs = Number(values.runs)
mkdirSync(dir, { recursive: true })
const python = join(process.cwd(), '.venv', 'bin', 'python')
execFileSync(
  python,
  [
    '-c',
    `
import json, os, random, sys, shutil, tempfile
import pyarrow as pa, pyarrow.parquet as pq, pandas as pd
from datasets import Dataset
d, mb = sys.argv[1], float(sys.argv[2])
rng = random.Random(0)
words = [''.join(rng.choice('abcdefghijklmnopqrstuvwxyz') for _ in range(rng.randint(2, 9))) for _ in range(5000)]
texts, size = [], 0
while size < mb * 1e6:
    t = ' '.join(rng.choice(words) for _ in range(rng.randint(50, 350)))
    texts.append(t); size += len(t) + 12
rows = [{"text": t} for t in texts]
with open(f"{d}/pt.jsonl", "w") as f:
    for r in rows: f.write(json.dumps(r) + "\\n")
with open(f"{d}/pt.json", "w") as f: json.dump(rows, f, indent=1)
with open(f"{d}/pt.txt", "w") as f: f.write("".join(t + "\\n" for t in texts))
pd.DataFrame(rows).to_csv(f"{d}/pt.csv", index=False)
table = pa.Table.from_pylist(rows)
pq.write_table(table, f"{d}/pt-snappy.parquet", compression="snappy")  # pyarrow's default row groups (1Mi rows): one large group
pq.write_table(table, f"{d}/pt-zstd.parquet", compression="zstd", row_group_size=20000)
pq.write_table(table, f"{d}/pt-none.parquet", compression="none", row_group_size=10000)
with tempfile.TemporaryDirectory() as tmp:
    Dataset.from_list(rows).save_to_disk(tmp)
    shutil.copy(f"{tmp}/data-00000-of-00001.arrow", f"{d}/pt.arrow")
conv = [{"conversations": [{"from": "human", "value": t[:200]}, {"from": "gpt", "value": t}]} for t in texts]
pq.write_table(pa.Table.from_pylist(conv), f"{d}/sharegpt-zstd.parquet", compression="zstd", row_group_size=20000)
`,
    dir,
    values.mb!,
  ],
  { stdio: 'inherit' },
)

async function ours(file: string): Promise<number> {
  const [source] = await resolveDatasets([join(dir, file)], dir, dir)
  let n = 0
  for await (const _ of streamExamples(source!, { stage: file.startsWith('pt') ? 'pt' : 'sft' })) n++
  return n
}

async function hyparquet(file: string): Promise<number> {
  let n = 0
  for await (const _ of readHyparquet(join(dir, file))) n++
  return n
}

const cases: [string, string, (file: string) => Promise<number>][] = [
  ['jsonl', 'pt.jsonl', ours],
  ['json array', 'pt.json', ours],
  ['txt', 'pt.txt', ours],
  ['csv', 'pt.csv', ours],
  ['arrow (datasets)', 'pt.arrow', ours],
  ['parquet snappy, 1 row group: parquet-wasm (llamapro)', 'pt-snappy.parquet', ours],
  ['parquet snappy, 1 row group: hyparquet', 'pt-snappy.parquet', hyparquet],
  ['parquet zstd: parquet-wasm (llamapro)', 'pt-zstd.parquet', ours],
  ['parquet zstd: hyparquet', 'pt-zstd.parquet', hyparquet],
  ['parquet uncompressed: parquet-wasm (llamapro)', 'pt-none.parquet', ours],
  ['parquet uncompressed: hyparquet', 'pt-none.parquet', hyparquet],
  ['sharegpt parquet zstd (nested): parquet-wasm (llamapro)', 'sharegpt-zstd.parquet', ours],
  ['sharegpt parquet zstd (nested): hyparquet', 'sharegpt-zstd.parquet', hyparquet],
]
const times = new Map<string, number[]>(cases.map(([name]) => [name, []]))
const counts = new Map<string, number>()
for (let run = 0; run < runs; run++) {
  for (const [name, file, read] of run % 2 ? [...cases].reverse() : cases) {
    let n = 0
    times.get(name)!.push(await timeIt(async () => (n = await read(file))))
    counts.set(name, n)
  }
}
const rows = cases.map(([name, file]) => {
  const mb = statSync(join(dir, file)).size / 1e6
  const seconds = median(times.get(name)!)
  return {
    name,
    file,
    mb: Number(mb.toFixed(1)),
    records: counts.get(name)!,
    seconds: Number(seconds.toFixed(2)),
    mbPerSecond: Number((mb / seconds).toFixed(1)),
  }
})
const machine = machineInfo()
const table = [
  `| format: reader | file MB | records | s (median of ${runs}) | MB/s |`,
  '|---|---:|---:|---:|---:|',
  ...rows.map((r) => `| ${r.name} | ${r.mb} | ${r.records} | ${r.seconds} | ${r.mbPerSecond} |`),
].join('\n')
console.log(table)
await writeResult(
  'readers',
  { machine, runs, rows },
  `# Dataset readers: throughput\n\n${describeMachine(machine)}. \`npx tsx bench/readers.ts --mb ${values.mb} --runs ` +
    `${runs}\`; files written by pyarrow ` +
    `21, pandas 2.2 and datasets 4.0 from the same ~${values.mb} MB of {"text"} records (sharegpt: the same texts as ` +
    `conversations). Seconds include turning each row into an example (the hyparquet rows: reading the records ` +
    `only). Runs alternate between cases; on a loaded ` +
    `machine only the ratios within one run mean much.\n\n${table}\n`,
)
