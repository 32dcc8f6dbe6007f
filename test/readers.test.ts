/**
 * The streaming readers and LLaMA-Factory's record mapping, against files written by the Python packages users
 * write them with (pyarrow, pandas, `datasets`: test/reference/dataset_fixtures.py) and against LLaMA-Factory
 * 0.9.5's own parser, `datasets.load_dataset` and converter (test/reference/llamafactory_datasets.py).
 */
import t from 'tap'
import { execFile } from 'node:child_process'
import { readFileSync, writeFileSync, mkdirSync } from 'node:fs'
import { join } from 'node:path'
import { promisify } from 'node:util'
import {
  type Example,
  type LocatedExample,
  loadExamples,
  resolveDatasets,
  sourceFingerprint,
  streamExamples,
} from '../lib/data/dataset.js'
import { REPO_ROOT, runPythonJson } from './helpers/python.js'

const alpaca = [
  { instruction: 'Add 2 and 2.', input: '', output: '4', system: 'Be brief.', history: [['Hi', 'Hello!']] },
  {
    instruction: 'Translate to German',
    input: 'cat, "the" animal\nsecond line',
    output: 'Katze — 猫',
    system: '',
    history: [],
  },
  { instruction: '', input: 'only the input', output: 'ok', system: 'S', history: [] },
  ...[3, 4, 5, 6, 7].map((i) => ({
    instruction: `q${i}`,
    input: i % 2 ? `in ${i}` : '',
    output: `a${i}`,
    system: '',
    history:
      i === 5
        ? [
            ['h', 'r'],
            ['h2', 'r2'],
          ]
        : [],
  })),
]
const turn = (from: string, value: string) => ({ from, value })
const sharegpt = [
  { conversations: [turn('human', 'q1'), turn('gpt', 'a1')], system: 'column system' },
  {
    conversations: [
      turn('system', 'message system'),
      turn('human', 'q'),
      turn('gpt', 'a'),
      turn('human', 'q2 ✓'),
      turn('gpt', 'a2'),
    ],
    system: 'not used: a system message comes first',
  },
  { conversations: [turn('human', 'x'), turn('gpt', '')], system: '' },
  { conversations: [turn('human', 'multi\nline'), turn('gpt', 'y')], system: '' },
]
const openai = [
  {
    messages: [
      { role: 'user', content: 'u' },
      { role: 'assistant', content: 'a' },
    ],
  },
  {
    messages: [
      { role: 'system', content: 'sys' },
      { role: 'user', content: 'u2' },
      { role: 'assistant', content: 'a2' },
    ],
  },
]
const pt = [
  'plain text',
  '',
  'unicode ✓ 猫 — ok',
  'with "quotes", and, commas',
  'NA',
  '  leading and trailing spaces  ',
  'last',
].map((text) => ({ text }))

const FILES = (kind: string) => [
  `${kind}.jsonl`,
  `${kind}.json`,
  `${kind}-snappy.parquet`,
  `${kind}-zstd.parquet`,
  `${kind}.arrow`,
  `${kind}-ipc-file.arrow`,
]
const ALPACA_COLUMNS = {
  prompt: 'instruction',
  query: 'input',
  response: 'output',
  system: 'system',
  history: 'history',
}
const SHAREGPT = { formatting: 'sharegpt', columns: { messages: 'conversations', system: 'system' } }
const OPENAI = {
  formatting: 'sharegpt',
  columns: { messages: 'messages' },
  tags: {
    role_tag: 'role',
    content_tag: 'content',
    user_tag: 'user',
    assistant_tag: 'assistant',
    system_tag: 'system',
  },
}
const PT = { columns: { prompt: 'text' } }

const info: Record<string, object> = {}
for (const file of FILES('alpaca')) info[`alpaca:${file}`] = { file_name: file, columns: ALPACA_COLUMNS }
info['alpaca:alpaca.csv'] = {
  file_name: 'alpaca.csv',
  columns: { prompt: 'instruction', query: 'input', response: 'output', system: 'system' },
}
info['alpaca-defaults'] = { file_name: 'alpaca-zstd.parquet' } // no columns: LLaMA-Factory's defaults, system and history unused
for (const file of FILES('sharegpt')) info[`sharegpt:${file}`] = { file_name: file, ...SHAREGPT }
for (const file of FILES('openai')) info[`openai:${file}`] = { file_name: file, ...OPENAI }
for (const file of [...FILES('pt'), 'pt.csv', 'pt.txt', 'crlf.txt', 'pt-shards', 'pt-jsonl-shards'])
  info[`pt:${file}`] = { file_name: file, ...PT }
info.mixed = { file_name: 'mixed', ...PT }

const dir = t.testdir()
process.env.HF_DATASETS_CACHE = join(dir, 'hf-cache')
process.env.HF_DATASETS_OFFLINE = '1'
const fixtures = (async () => {
  await runPythonJson(['test/reference/dataset_fixtures.py'], JSON.stringify({ dir, alpaca, sharegpt, openai, pt: pt }))
  const bad = alpaca.map((r, i) => (i === 4 ? { ...r, output: null } : r))
  await runPythonJson(
    [
      '-c',
      `import json, sys, pyarrow as pa, pyarrow.parquet as pq
from datasets import Dataset
r = json.load(sys.stdin)
pq.write_table(pa.Table.from_pylist(r["bad"]), r["dir"] + "/bad-output.parquet", row_group_size=3)
Dataset.from_list(r["bad"]).save_to_disk(r["dir"] + "/bad-output-ds")
print("[]")`,
    ],
    JSON.stringify({ dir, bad }),
  )
  writeFileSync(join(dir, 'dataset_info.json'), JSON.stringify(info))
})()

const SFT = (name: string) => !name.startsWith('pt')
async function ours(name: string): Promise<Example[]> {
  return loadExamples({ names: [name], stage: SFT(name) ? 'sft' : 'pt', datasetDir: dir, baseDir: dir })
}
async function located(name: string, stage: 'pt' | 'sft' = 'sft'): Promise<LocatedExample[]> {
  const [source] = await resolveDatasets([name], dir, dir)
  const out: LocatedExample[] = []
  for await (const e of streamExamples(source!, { stage })) out.push(e)
  return out
}

type Aligned = {
  _prompt: { role: string; content: string }[]
  _response: { role: string; content: string }[]
  _system: string | null
}
/** An example in the shape of LLaMA-Factory's aligned dataset (_prompt, _response, _system). */
function aligned(example: Example): Aligned | string {
  if (example.kind === 'text') return example.text
  const messages = [...example.messages]
  const system = messages[0]?.role === 'system' ? messages.shift()!.content : ''
  return { _prompt: messages.slice(0, -1), _response: messages.slice(-1), _system: system }
}

t.test(
  "every file type, read as LLaMA-Factory 0.9.5's own parser, datasets.load_dataset and converter read it",
  async (t) => {
    await fixtures
    const names = Object.keys(info).filter((n) => n !== 'mixed')
    const reference = await runPythonJson<Record<string, Aligned[]>>(
      ['test/reference/llamafactory_datasets.py'],
      JSON.stringify({ dataset_dir: dir, names }),
    )
    for (const name of names) {
      const expected = reference[name]!.map((row) =>
        SFT(name) ? { ...row, _system: row._system ?? '' } : row._prompt[0]!.content,
      )
      t.same((await ours(name)).map(aligned), expected, name)
    }
    t.equal(
      reference['pt:crlf.txt']!.length,
      6,
      "datasets' text loader keeps blank lines: first, '', third, fourth, '', last",
    )
  },
)

t.test('every file type gives the examples of the JSONL of the same records', async (t) => {
  await fixtures
  for (const kind of ['alpaca', 'sharegpt', 'openai', 'pt']) {
    const jsonl = await ours(`${kind}:${kind}.jsonl`)
    t.equal(jsonl.length, { alpaca, sharegpt, openai, pt }[kind]!.length)
    const others = [...FILES(kind).slice(1), ...(kind === 'pt' ? ['pt.txt', 'pt-shards', 'pt-jsonl-shards'] : [])]
    for (const file of others) t.same(await ours(`${kind}:${file}`), jsonl, `${kind}: ${file}`)
  }
  // pandas reads "NA" (and "", "null", "None", …) as a missing value; LLaMA-Factory then sees an empty text.
  const csv = await ours('pt:pt.csv')
  const jsonl = await ours('pt:pt.jsonl')
  t.same(
    csv,
    jsonl.map((e) => (e.kind === 'text' && e.text === 'NA' ? { kind: 'text', text: '' } : e)),
    'pt.csv: the JSONL but for "NA"',
  )
  t.same(
    (await ours('alpaca-defaults'))[0],
    {
      kind: 'conversation',
      messages: [
        { role: 'user', content: 'Add 2 and 2.' },
        { role: 'assistant', content: '4' },
      ],
    },
    'no columns: system and history unused',
  )
})

t.test('records carry where they are: file:line, row group and row, batch and row', async (t) => {
  await fixtures
  const where = async (name: string, stage: 'pt' | 'sft' = 'sft') =>
    (await located(name, stage)).map((e) => e.where.slice(dir.length + 1))
  t.same(
    await where('alpaca:alpaca.jsonl'),
    alpaca.map((_, i) => `alpaca.jsonl:${i + 1}`),
  )
  const jsonText = readFileSync(join(dir, 'alpaca.json'), 'utf8').split('\n')
  const starts = jsonText.flatMap((line, i) => (line === '  {' ? [i + 1] : []))
  t.same(
    await where('alpaca:alpaca.json'),
    starts.map((l) => `alpaca.json:${l}`),
    'json array: the line each record starts on',
  )
  t.same(
    await where('alpaca:alpaca-zstd.parquet'),
    alpaca.map((_, i) => `alpaca-zstd.parquet: row group ${Math.floor(i / 3)}, row ${i}`),
  )
  t.same(
    await where('alpaca:alpaca.arrow'),
    alpaca.map((_, i) => `alpaca.arrow: batch 0, row ${i}`),
  )
  t.same(
    await where('alpaca:alpaca-ipc-file.arrow'),
    alpaca.map((_, i) => `alpaca-ipc-file.arrow: batch ${Math.floor(i / 2)}, row ${i}`),
  )
  // the csv's second record has a quoted field over two lines, so the third starts on line 5
  t.same((await where('alpaca:alpaca.csv')).slice(0, 4), [
    'alpaca.csv:2',
    'alpaca.csv:3',
    'alpaca.csv:5',
    'alpaca.csv:6',
  ])
  t.same(
    await where('pt:crlf.txt', 'pt'),
    [1, 2, 3, 4, 5, 6].map((l) => `crlf.txt:${l}`),
  )
})

t.test("folders: LLaMA-Factory's one-type rule, shards in name order, sizes and fingerprints", async (t) => {
  await fixtures
  const [shards] = await resolveDatasets(['pt:pt-shards'], dir, dir)
  t.same(
    shards!.files,
    [0, 1, 2].map((i) => join(dir, 'pt-shards', `train-0000${i}-of-00003.parquet`)),
  )
  t.equal(shards!.format, 'parquet')
  const fingerprint = await sourceFingerprint(shards!)
  t.equal(
    shards!.totalBytes,
    fingerprint.reduce((a, f) => a + f.size, 0),
  )
  t.ok(fingerprint.every((f) => f.mtimeMs > 0 && f.path.startsWith(join(dir, 'pt-shards'))))
  const progress: number[] = []
  for await (const _ of streamExamples(shards!, { stage: 'pt', onBytes: (n) => progress.push(n) })) void _
  t.ok(
    progress.every((n, i) => i === 0 || n >= progress[i - 1]!),
    'onBytes is monotonic',
  )
  t.equal(progress.at(-1), shards!.totalBytes, 'and ends at totalBytes')
  await t.rejects(resolveDatasets(['mixed'], dir, dir), {
    code: 'LLAMAPRO_DATASET',
    message:
      /dataset "mixed": the files of a dataset folder must all have one type .* json: a\.jsonl; parquet: b\.parquet/,
  })
  mkdirSync(join(dir, 'nested', 'sub'), { recursive: true })
  writeFileSync(join(dir, 'nested', 'a.jsonl'), '{"text": "x"}\n')
  await t.rejects(resolveDatasets(['nested'], dir, dir), { message: /holds a folder, .*nested\/sub/ })
  writeFileSync(join(dir, 'notes.md'), 'x')
  await t.rejects(resolveDatasets(['notes.md'], dir, dir), {
    message: /notes\.md has no known file type \(allowed: \.arrow, \.csv, \.json, \.jsonl, \.parquet, \.txt/,
  })
  const [byPath] = await resolveDatasets(['sharegpt-zstd.parquet'], dir, dir)
  t.equal(byPath!.formatting, 'sharegpt', 'a path: alpaca or sharegpt from its first record')
  t.equal(byPath!.fromDatasetInfo, false)
})

t.test('a malformed record names the file and line, or row group and row, or batch and row', async (t) => {
  await fixtures
  const write = (name: string, text: string) => writeFileSync(join(dir, name), text)
  write('bad.jsonl', '{"text": "a"}\n\n{"text": "b",}\n')
  await t.rejects(loadExamples({ names: ['bad.jsonl'], stage: 'pt', datasetDir: dir, baseDir: dir }), {
    message: /bad\.jsonl:3: invalid JSON on this line/,
  })
  write('bad-nested.json', '[\n  {"text": "a"},\n  {\n    "text":\n      tru\n  }\n]\n')
  await t.rejects(loadExamples({ names: ['bad-nested.json'], stage: 'pt', datasetDir: dir, baseDir: dir }), {
    message: /bad-nested\.json:5: invalid JSON/,
  })
  write('unclosed.json', '[\n  {"text": "a"},\n  {"text": "b"}\n')
  await t.rejects(loadExamples({ names: ['unclosed.json'], stage: 'pt', datasetDir: dir, baseDir: dir }), {
    message: /unclosed\.json:4: invalid JSON: the file ends before the array's closing "\]"/,
  })
  write('comma.json', '[{"text": "a"} {"text": "b"}]')
  await t.rejects(loadExamples({ names: ['comma.json'], stage: 'pt', datasetDir: dir, baseDir: dir }), {
    message: /comma\.json:1: invalid JSON: expected "," or "\]"/,
  })
  write('bad.csv', 'instruction,output\nq,a\nq2,a2,extra\n')
  await t.rejects(loadExamples({ names: ['bad.csv'], stage: 'sft', datasetDir: dir, baseDir: dir }), {
    message: /bad\.csv:3: 3 fields, but the header \(line 1\) names 2 \(instruction, output\)/,
  })
  write('quote.csv', 'text\n"open quote\n')
  await t.rejects(loadExamples({ names: ['quote.csv'], stage: 'pt', datasetDir: dir, baseDir: dir }), {
    message: /quote\.csv(:\d+)?: invalid CSV/,
  })
  await t.rejects(loadExamples({ names: ['bad-output.parquet'], stage: 'sft', datasetDir: dir, baseDir: dir }), {
    message: /bad-output\.parquet: row group 1, row 4: "output" must be a string, got null/,
  })
  await t.rejects(
    loadExamples({ names: ['bad-output-ds/data-00000-of-00001.arrow'], stage: 'sft', datasetDir: dir, baseDir: dir }),
    { message: /data-00000-of-00001\.arrow: batch 0, row 4: "output" must be a string, got null/ },
  )
  write('fake.parquet', 'not parquet at all')
  await t.rejects(loadExamples({ names: ['fake.parquet'], stage: 'pt', datasetDir: dir, baseDir: dir }), {
    message: /fake\.parquet: not a readable parquet file/,
  })
  write('fake.arrow', 'not arrow at all')
  await t.rejects(loadExamples({ names: ['fake.arrow'], stage: 'pt', datasetDir: dir, baseDir: dir }), {
    message: /fake\.arrow: not an Arrow IPC file or stream/,
  })
  await t.rejects(
    loadExamples({
      names: ['sharegpt.jsonl'],
      stage: 'sft',
      datasetDir: dir,
      baseDir: dir,
      signal: AbortSignal.abort(),
    }),
    { name: 'AbortError' },
  )
})

t.test('a JSON array and a JSONL far larger than the heap are read with bounded memory', async (t) => {
  // A child with a 48 MB heap writes ~150 MB of records (one JSON array, one JSONL) and streams them back:
  // reading either whole would need gigabytes of heap (a 150 MB file cannot be one string on a 48 MB old space).
  // heapUsed also counts the young generation, so the bound checked is 80 MB, about half the file.
  const script = `
    import { createWriteStream } from 'node:fs'
    import { once } from 'node:events'
    import { resolveDatasets, streamExamples } from ${JSON.stringify(join(REPO_ROOT, 'lib/data/dataset.ts'))}
    const dir = process.argv[2], records = 150_000, text = 'x'.repeat(1000)
    for (const [name, open, sep, close] of [['big.json', '[\\n', ',\\n', '\\n]\\n'], ['big.jsonl', '', '\\n', '\\n']]) {
      const out = createWriteStream(dir + '/' + name)
      out.write(open)
      for (let i = 0; i < records; i++) {
        if (!out.write((i ? sep : '') + JSON.stringify({ text: i + text }))) await once(out, 'drain')
      }
      out.end(close)
      await once(out, 'finish')
    }
    const result = {}
    for (const name of ['big.json', 'big.jsonl']) {
      const [source] = await resolveDatasets([name], dir, dir)
      let n = 0, last = '', peak = 0
      for await (const { example, where } of streamExamples(source, { stage: 'pt' })) {
        if (example.text !== n + text) throw new Error('record ' + n + ' differs at ' + where)
        n++; last = where
        if (n % 10000 === 0) peak = Math.max(peak, process.memoryUsage().heapUsed)
      }
      result[name] = { n, last: last.slice(dir.length + 1), bytes: source.totalBytes, peakHeapMB: Math.round(peak / 2 ** 20) }
    }
    console.log(JSON.stringify(result))`
  const file = join(dir, 'big.mts')
  writeFileSync(file, script)
  const tsx = join(REPO_ROOT, 'node_modules', 'tsx', 'dist', 'cli.mjs')
  const { stdout } = await promisify(execFile)(process.execPath, ['--max-old-space-size=48', tsx, file, dir], {
    timeout: 240_000,
  })
  const result = JSON.parse(stdout) as Record<string, { n: number; last: string; bytes: number; peakHeapMB: number }>
  t.equal(result['big.json']!.n, 150_000)
  t.equal(result['big.json']!.last, 'big.json:150001', 'the last record of the array starts on line 150001')
  t.equal(result['big.jsonl']!.n, 150_000)
  t.equal(result['big.jsonl']!.last, 'big.jsonl:150000')
  t.ok(result['big.json']!.bytes > 150e6, `${result['big.json']!.bytes} bytes`)
  t.ok(
    result['big.json']!.peakHeapMB < 80 && result['big.jsonl']!.peakHeapMB < 80,
    `peak heap ${result['big.json']!.peakHeapMB} / ${result['big.jsonl']!.peakHeapMB} MB`,
  )
})
