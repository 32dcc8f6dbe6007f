/**
 * Data preparation at scale: tokenizing a generated pt corpus (JSONL of real source text) into the token store
 * with 1 and N worker threads — MB/s, tokens/s, peak RSS — against LLaMA-Factory's own path (HF datasets.map with
 * num_proc = workers and the same tokenizer) when a Python with datasets + transformers is given, and the peak RSS
 * of training reading a small and a large store.
 *
 *   npx tsx bench/data-prep.ts --model /tmp/smol --mb 100 --workers 2 [--python /tmp/llamapro-lf-venv/bin/python]
 *     [--train-mb 100,2000] [--counts 1,2 (the worker counts to measure; default 1 and --workers)]
 *
 * Each measurement runs in a child process of its own, so its peak RSS is its own.
 */
import { execFileSync, spawnSync } from 'node:child_process'
import {
  createWriteStream,
  existsSync,
  mkdirSync,
  readFileSync,
  readdirSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs'
import { cpus, tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'

const here = dirname(fileURLToPath(import.meta.url))
const root = join(here, '..')

async function generateCorpus(file: string, megabytes: number): Promise<void> {
  // Real text: TypeScript's own declaration files, cut into documents of 1-4 KB.
  const src = join(root, 'node_modules', 'typescript', 'lib')
  const text = readdirSync(src)
    .filter((f) => f.endsWith('.d.ts'))
    .map((f) => readFileSync(join(src, f), 'utf8'))
    .join('\n')
  const out = createWriteStream(file)
  let written = 0
  let at = 0
  let size = 1000
  while (written < megabytes * 1e6) {
    if (at + size > text.length) at = 0
    const line = `${JSON.stringify({ text: text.slice(at, at + size) })}\n`
    at += size
    size = 1000 + ((size * 7919) % 3000)
    written += Buffer.byteLength(line)
    if (!out.write(line)) await new Promise<void>((r) => out.once('drain', () => r()))
  }
  await new Promise<void>((r) => out.end(() => r()))
}

function measureChild(args: string[]): Record<string, number> {
  const result = spawnSync(process.execPath, ['--import', 'tsx', fileURLToPath(import.meta.url), ...args], {
    cwd: root,
    encoding: 'utf8',
    maxBuffer: 1 << 26,
  })
  if (result.status !== 0) throw new Error(`child failed: ${result.stderr}`)
  const last = result.stdout.trim().split('\n').pop()!
  return JSON.parse(last) as Record<string, number>
}

async function prepChild(corpus: string, model: string, workers: number, cutoff: number, store: string): Promise<void> {
  const { prepareTokenData } = await import('../lib/data/store/token-data.js')
  const { loadTokenizer } = await import('../lib/data/tokenizer.js')
  const { pretrainTokenizer } = await import('../lib/data/template.js')
  const base = await loadTokenizer(model)
  const tokenizer = pretrainTokenizer('default', base)
  const started = performance.now()
  const data = await prepareTokenData({
    modelDir: model,
    stage: 'pt',
    template: 'default',
    defaultSystem: null,
    enableThinking: true,
    cutoffLen: cutoff,
    packing: true,
    dataset: [corpus],
    evalDataset: [],
    datasetDir: dirname(corpus),
    baseDir: dirname(corpus),
    maxSamples: null,
    mixStrategy: 'concat',
    interleaveProbs: null,
    seed: 42,
    tokenizedPath: store,
    overwriteCache: true,
    workers,
    maxTokenId: tokenizer.maxId,
    tokenizer: base,
    blockBos: tokenizer.addBosToken ? tokenizer.bosId : null,
    log: (line) => process.stderr.write(`${line}\n`),
  })
  const seconds = (performance.now() - started) / 1000
  console.log(
    JSON.stringify({
      seconds,
      tokens: data.train.manifest.tokens,
      sequences: data.train.length,
      peakRssBytes: process.resourceUsage().maxRSS * 1024,
    }),
  )
}

async function trainChild(store: string, model: string, out: string): Promise<void> {
  const { train } = await import('../lib/train/trainer.js')
  const { parseTrainConfig } = await import('../lib/train/config.js')
  const cfg = parseTrainConfig(
    {
      model_name_or_path: model,
      stage: 'pt',
      tokenized_path: store,
      output_dir: out,
      overwrite_output_dir: true,
      cutoff_len: 256,
      per_device_train_batch_size: 2,
      max_steps: 20,
      logging_steps: 10,
      save_steps: 100000,
      finetuning_type: 'freeze',
      freeze_trainable_layers: 1,
      threads: 1,
    },
    'bench',
    dirname(out),
  )
  const result = await train(cfg)
  console.log(JSON.stringify({ seconds: result.seconds, peakRssBytes: process.resourceUsage().maxRSS * 1024 }))
}

/** A pt store of `megabytes` of synthetic uint16 tokens, written directly (what tokenizing that much would give). */
async function syntheticStore(dir: string, megabytes: number, vocab: number, cutoff: number): Promise<void> {
  const { StoreWriter } = await import('../lib/data/store/writer.js')
  const writer = await StoreWriter.create(dir, { dtype: 'uint16', labelsAreIds: true, fixedLength: cutoff })
  const block = new Int32Array(cutoff)
  const blocks = Math.floor((megabytes * 1e6) / (cutoff * 2))
  let x = 12345
  for (let b = 0; b < blocks; b++) {
    for (let t = 0; t < cutoff; t++) {
      x = (x * 1103515245 + 12345) >>> 0
      block[t] = x % vocab
    }
    await writer.append(block)
  }
  await writer.commit(
    { examples: blocks, droppedExamples: 0, droppedTokens: 0, inputBytes: 0, seconds: 0 },
    { synthetic: true },
    'synthetic',
  )
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      child: { type: 'string' },
      corpus: { type: 'string' },
      model: { type: 'string', default: '/tmp/smol' },
      workers: { type: 'string' },
      cutoff: { type: 'string', default: '1024' },
      store: { type: 'string' },
      out: { type: 'string' },
      mb: { type: 'string', default: '100' },
      python: { type: 'string' },
      'train-mb': { type: 'string', default: '' },
      work: { type: 'string' },
      counts: { type: 'string' },
    },
  })
  if (values.child === 'prep')
    return prepChild(values.corpus!, values.model!, Number(values.workers), Number(values.cutoff), values.store!)
  if (values.child === 'train') return trainChild(values.store!, values.model!, values.out!)
  const work = values.work ?? join(tmpdir(), 'llamapro-data-prep')
  mkdirSync(work, { recursive: true })
  const workers = Number(values.workers ?? cpus().length)
  const rows: string[] = []
  if (Number(values.mb) > 0) await preparation(values, work, workers, rows)
  if (values['train-mb']) await trainingRss(values['train-mb'], work, rows)
  writeFileSync(join(work, 'last-run.md'), rows.join('\n'))
}

async function preparation(
  values: Record<string, string | undefined>,
  work: string,
  workers: number,
  rows: string[],
): Promise<void> {
  const corpus = join(work, `corpus-${values.mb}mb.jsonl`)
  if (!existsSync(corpus)) await generateCorpus(corpus, Number(values.mb))
  const mb = statSync(corpus).size / 1e6
  const line = (what: string, r: Record<string, number>) => {
    const text =
      `| ${what} | ${r.seconds!.toFixed(1)} s | ${(mb / r.seconds!).toFixed(2)} MB/s | ` +
      `${Math.round(r.tokens! / r.seconds!).toLocaleString('en-US')} tokens/s | ` +
      `${(r.peakRssBytes! / 2 ** 20).toFixed(0)} MiB |`
    rows.push(text)
    console.log(text)
  }
  console.log(
    `corpus ${corpus}: ${mb.toFixed(1)} MB, tokenizer ${values.model}, cutoff ${values.cutoff}, ${cpus().length} cores (load average ${(
      await import('node:os')
    )
      .loadavg()
      .map((l) => l.toFixed(1))
      .join(' ')})`,
  )
  console.log('| preparation | time | input | tokens | peak RSS |\n|---|---|---|---|---|')
  const counts = values.counts ? values.counts.split(',').map(Number) : [...new Set([1, workers])]
  for (const w of counts) {
    line(
      `llamapro, ${w} worker(s)`,
      measureChild([
        '--child',
        'prep',
        '--corpus',
        corpus,
        '--model',
        values.model!,
        '--workers',
        String(w),
        '--cutoff',
        values.cutoff!,
        '--store',
        join(work, 'store'),
      ]),
    )
    if (values.python) {
      const cache = join(work, 'hf-cache')
      rmSync(cache, { recursive: true, force: true })
      const out = execFileSync(
        values.python,
        [join(here, 'data-prep', 'lf_prep.py'), corpus, values.model!, String(w), values.cutoff!, cache],
        { encoding: 'utf8', maxBuffer: 1 << 26, env: { ...process.env, TOKENIZERS_PARALLELISM: 'false' } },
      )
      line(`LLaMA-Factory path (datasets.map, num_proc ${w})`, JSON.parse(out.trim().split('\n').pop()!))
    }
  }
}

async function trainingRss(sizes: string, work: string, rows: string[]): Promise<void> {
  const { writeTrainableModel } = await import('../test/helpers/trainable-model.js')
  const model = join(work, 'tiny-model')
  if (!existsSync(join(model, 'config.json'))) await writeTrainableModel(model)
  const vocab = JSON.parse(readFileSync(join(model, 'config.json'), 'utf8')).vocab_size as number
  console.log('| training on a store of | steps | peak RSS |\n|---|---|---|')
  for (const size of sizes.split(',').map(Number)) {
    const store = join(work, `synthetic-${size}mb`)
    if (!existsSync(join(store, 'manifest.json'))) await syntheticStore(store, size, vocab, 256)
    const r = measureChild(['--child', 'train', '--store', store, '--model', model, '--out', join(work, 'train-out')])
    const text =
      `| ${size} MB (${Math.round((size * 1e6) / 2).toLocaleString('en-US')} tokens) | 20 | ` +
      `${(r.peakRssBytes! / 2 ** 20).toFixed(0)} MiB |`
    rows.push(text)
    console.log(text)
  }
}

await main()
