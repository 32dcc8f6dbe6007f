/**
 * The on-disk token store: it round-trips, equals what preprocess.ts gives in memory (whose ids the template tests
 * check against LLaMA-Factory), is reused without tokenizing, rebuilt when an input changes, honours
 * tokenized_path / overwrite_cache, survives kill -9 while building, and is what training reads.
 */
import t from 'tap'
import { spawn } from 'node:child_process'
import {
  appendFileSync,
  cpSync,
  existsSync,
  mkdirSync,
  readFileSync,
  readdirSync,
  rmSync,
  utimesSync,
  writeFileSync,
} from 'node:fs'
import { join } from 'node:path'
import { BatchSchedule, shuffledIndices, splitEval, splitSource } from '../lib/data/batches.js'
import { loadExamples } from '../lib/data/dataset.js'
import { mixExamples } from '../lib/data/mix.js'
import { preprocess } from '../lib/data/preprocess.js'
import { tokenizationCounter } from '../lib/data/store/build.js'
import { TokenStore, isStore } from '../lib/data/store/reader.js'
import { type TokenDataOptions, prepareTokenData } from '../lib/data/store/token-data.js'
import { StoreWriter } from '../lib/data/store/writer.js'
import { chatTemplate, pretrainTokenizer } from '../lib/data/template.js'
import { loadTokenizer } from '../lib/data/tokenizer.js'
import { RankSchedule } from '../lib/distributed/sharding.js'
import type { DatasetSource, LocatedExample } from '../lib/data/dataset.js'
import { writeDatasets, writeTrainableModel } from './helpers/trainable-model.js'
import { REPO_ROOT } from './helpers/python.js'

const readLines = (file: string): string => readFileSync(file, 'utf8')
const root = t.testdir()
const model = join(root, 'model')
let files: Awaited<ReturnType<typeof writeDatasets>>

t.before(async () => {
  await writeTrainableModel(model)
  files = await writeDatasets(root)
})

async function options(
  overrides: Partial<TokenDataOptions> & { dataset: string[] },
  cache = join(root, 'cache'),
): Promise<TokenDataOptions> {
  process.env.LLAMAPRO_TOKEN_CACHE = cache
  const tokenizer = await loadTokenizer(model)
  const stage = overrides.stage ?? 'pt'
  const template = overrides.template ?? 'default'
  const data =
    stage === 'sft'
      ? chatTemplate(template, tokenizer, () => undefined).tokenizer
      : pretrainTokenizer(template, tokenizer)
  return {
    modelDir: model,
    stage,
    template,
    defaultSystem: null,
    enableThinking: true,
    cutoffLen: 48,
    packing: stage === 'pt',
    evalDataset: [],
    datasetDir: root,
    baseDir: root,
    maxSamples: null,
    mixStrategy: 'concat',
    interleaveProbs: null,
    seed: 42,
    tokenizedPath: null,
    overwriteCache: false,
    workers: 2,
    maxTokenId: data.maxId,
    blockBos: data.addBosToken ? data.bosId : null,
    ...overrides,
  }
}

t.test('a store round-trips ids, labels (-100 included) and lengths, in uint16 and uint32', async (t) => {
  for (const dtype of ['uint16', 'uint32'] as const) {
    const dir = join(t.testdir(), 'store')
    const big = dtype === 'uint32' ? 70_000 : 7
    const sequences = [
      { ids: [1, 2, 3], labels: [-100, 2, 3] },
      { ids: [big, 5], labels: [-100, -100] },
      { ids: [9, 8, 7, 6, 5], labels: [9, -100, 7, 6, 5] },
    ]
    const writer = await StoreWriter.create(dir, { dtype, labelsAreIds: false, fixedLength: null })
    for (const s of sequences) await writer.append(s.ids, s.labels)
    t.notOk(isStore(dir), 'not a store before commit')
    const manifest = await writer.commit(
      { examples: 3, droppedExamples: 0, droppedTokens: 0, inputBytes: 0, seconds: 0 },
      {},
      'k',
    )
    t.equal(manifest.tokens, 10)
    t.equal(manifest.maxTokenId, Math.max(big, 9))
    const store = TokenStore.open(dir)
    t.equal(store.length, 3)
    sequences.forEach((s, i) => {
      const read = store.read(i)
      t.same(Array.from(read.ids), s.ids, `${dtype} ids ${i}`)
      t.same(Array.from(read.labels), s.labels, `${dtype} labels ${i}`)
      t.equal(store.targetsOf(i), s.labels.slice(1).filter((l) => l !== -100).length)
    })
    store.close()
  }
  const fixed = join(t.testdir(), 'fixed')
  const writer = await StoreWriter.create(fixed, { dtype: 'uint16', labelsAreIds: true, fixedLength: 4 })
  await writer.append([1, 2, 3, 4])
  await writer.append([5, 6, 7, 8])
  const manifest = await writer.commit(
    { examples: 1, droppedExamples: 0, droppedTokens: 0, inputBytes: 0, seconds: 0 },
    {},
    'k',
  )
  t.equal(manifest.fixedLength, 4, 'packed blocks need no offsets index')
  t.notOk(existsSync(join(fixed, 'offsets.bin')))
  t.same(Array.from(TokenStore.open(fixed).read(1).labels), [5, 6, 7, 8], 'pt labels are the ids')
})

t.test('the store holds exactly what preprocess.ts makes in memory, for pt and sft, packed or not', async (t) => {
  const tokenizer = await loadTokenizer(model)
  const cases = [
    { stage: 'pt', file: files.pt, packing: true, template: 'default' },
    { stage: 'pt', file: files.pt, packing: false, template: 'default' },
    { stage: 'sft', file: files.alpaca, packing: false, template: 'chatml' },
    { stage: 'sft', file: files.sharegpt, packing: true, template: 'default' },
  ] as const
  for (const c of cases) {
    const data = await prepareTokenData(
      await options({ dataset: [c.file], stage: c.stage, packing: c.packing, template: c.template }),
    )
    const template = c.stage === 'sft' ? chatTemplate(c.template, tokenizer, () => undefined) : undefined
    const dataTokenizer = template?.tokenizer ?? pretrainTokenizer(c.template, tokenizer)
    const examples = await loadExamples({ names: [c.file], stage: c.stage, datasetDir: root, baseDir: root })
    const { sequences } = preprocess(examples, c.stage, dataTokenizer, template?.renderConversation, 48, c.packing, {
      efficientEos: template?.efficientEos,
    })
    t.equal(data.train.length, sequences.length, `${c.stage} packing ${c.packing}: as many sequences`)
    const mismatches = sequences.filter((s, i) => {
      const r = data.train.read(i)
      return Array.from(r.ids).join() !== s.ids.join() || Array.from(r.labels).join() !== s.labels.join()
    })
    t.equal(mismatches.length, 0, `${c.stage} packing ${c.packing} ${c.template}: identical ids and labels`)
    data.train.close()
  }
})

t.test('a second run reuses the store without tokenizing; a changed file or tokenizer rebuilds it', async (t) => {
  const cache = join(t.testdir(), 'cache')
  const file = join(root, 'reuse.jsonl')
  writeFileSync(file, readLines(files.pt))
  const first = await prepareTokenData(await options({ dataset: [file] }, cache))
  t.notOk(first.reused)
  const builds = tokenizationCounter.builds
  const second = await prepareTokenData(await options({ dataset: [file] }, cache))
  t.ok(second.reused, 'reused')
  t.equal(tokenizationCounter.builds, builds, 'nothing was tokenized')
  t.equal(second.dir, first.dir)
  appendFileSync(file, `${JSON.stringify({ text: 'def extra(x):\n    return x + 1' })}\n`)
  const third = await prepareTokenData(await options({ dataset: [file] }, cache))
  t.notOk(third.reused, 'a changed file rebuilds')
  t.not(third.dir, first.dir)
  const touched = new Date(Date.now() + 5000)
  utimesSync(file, touched, touched)
  t.notOk((await prepareTokenData(await options({ dataset: [file] }, cache))).reused, 'a new mtime rebuilds')
  const otherCutoff = await prepareTokenData(await options({ dataset: [file], cutoffLen: 32 }, cache))
  t.notOk(otherCutoff.reused, 'another cutoff_len is another store')
  const forced = await prepareTokenData(await options({ dataset: [file], cutoffLen: 32, overwriteCache: true }, cache))
  t.notOk(forced.reused, 'overwrite_cache rebuilds')
  t.equal(forced.dir, otherCutoff.dir, 'in the same place')
  t.ok(TokenStore.open(otherCutoff.dir).length > 0)
  // A changed tokenizer: a copy of the model whose tokenizer_config differs.
  const model2 = join(t.testdir(), 'model2')
  cpSync(model, model2, { recursive: true })
  const config = JSON.parse(readFileSync(join(model2, 'tokenizer_config.json'), 'utf8'))
  writeFileSync(join(model2, 'tokenizer_config.json'), JSON.stringify({ ...config, model_max_length: 1234 }))
  t.notOk(
    (await prepareTokenData({ ...(await options({ dataset: [file] }, cache)), modelDir: model2 })).reused,
    'a changed tokenizer rebuilds',
  )
  for (const d of [first, second, third, otherCutoff, forced]) d.train.close()
})

t.test('tokenized_path: built there when absent, loaded without the data files when present', async (t) => {
  const dir = t.testdir()
  const file = join(dir, 'corpus.jsonl')
  writeFileSync(file, readLines(files.pt))
  const path = join(dir, 'tokens')
  const logs: string[] = []
  const built = await prepareTokenData(
    await options({ dataset: [file], tokenizedPath: path, log: (l) => logs.push(l) }),
  )
  t.ok(isStore(path))
  t.notOk(built.reused)
  t.match(logs.join('\n'), /saved at .*tokens/)
  rmSync(file)
  const warnings: string[] = []
  const builds = tokenizationCounter.builds
  const loaded = await prepareTokenData(
    await options({ dataset: [file], tokenizedPath: path, warn: (w) => warnings.push(w) }),
  )
  t.ok(loaded.reused)
  t.equal(tokenizationCounter.builds, builds)
  t.equal(loaded.train.length, built.train.length)
  t.match(warnings.join('\n'), /data files and data keys .* are not read/)
  await t.rejects(
    prepareTokenData(await options({ dataset: [file], tokenizedPath: path, overwriteCache: true })),
    { message: /not found|does not exist|no file/ },
    'overwrite_cache reads the data again',
  )
  const junk = join(dir, 'junk')
  mkdirSync(junk)
  writeFileSync(join(junk, 'x'), 'x')
  await t.rejects(prepareTokenData(await options({ dataset: [files.pt], tokenizedPath: junk })), {
    message: /tokenized_path .*junk is not empty and holds no llamapro token store/,
  })
  built.train.close()
  loaded.train.close()
})

t.test(
  'two ranks read disjoint batches whose union is the epoch; val_size holds out what splitEval does',
  async (t) => {
    const data = await prepareTokenData(await options({ dataset: [files.pt] }))
    const n = data.train.length
    const { train, eval: held } = splitSource(data.train, 0.1, 42)
    const expected = splitEval(
      Array.from({ length: n }, (_, i) => i),
      0.1,
      42,
    )
    const ids = (source: typeof train) =>
      Array.from({ length: source.length }, (_, i) => Array.from(source.read(i).ids).join())
    const all = ids(data.train)
    t.same(
      ids(held),
      expected.eval.map((i) => all[i]),
      'the held-out sequences are splitEval’s',
    )
    t.same(
      ids(train),
      expected.train.map((i) => all[i]),
    )
    const global = new BatchSchedule(train, 4, 42, 0)
    const seen: string[][] = [[], []]
    for (const rank of [0, 1]) {
      const schedule = new RankSchedule(global, rank, 2)
      for (let b = 0; b < schedule.batchesPerEpoch; b++) {
        const index = schedule.globalIndex(b)
        if (b * 2 + rank >= global.batchesPerEpoch) continue // even_batches repeats from the start
        seen[rank]!.push(...Array.from(global.indices(0, index), (i) => String(i)))
      }
    }
    t.same(
      seen[0]!.filter((i) => seen[1]!.includes(i)),
      [],
      'disjoint',
    )
    t.same(
      [...seen[0]!, ...seen[1]!].map(Number).sort((a, b) => a - b),
      Array.from({ length: train.length }, (_, i) => i),
      'together: the whole epoch',
    )
    t.same(
      Array.from(global.indices(0, 0)),
      shuffledIndices(train.length, 42).slice(0, 4),
      'the order is the seeded shuffle of today',
    )
    data.train.close()
  },
)

t.test(
  'mix_strategy: interleave proportions follow interleave_probs; under stops at the first exhausted, over at the last',
  async (t) => {
    const source = (name: string): DatasetSource => ({
      name,
      files: [],
      format: 'json',
      formatting: 'alpaca',
      columns: {},
      tags: {},
      fromDatasetInfo: false,
      totalBytes: 0,
    })
    const sizes: Record<string, number> = { a: 6000, b: 6000 }
    const open = async function* (s: DatasetSource): AsyncIterable<LocatedExample> {
      for (let i = 0; i < sizes[s.name]!; i++)
        yield { example: { kind: 'text', text: `${s.name}${i}` }, where: `${s.name}:${i}` }
    }
    const take = async (
      strategy: 'interleave_under' | 'interleave_over' | 'concat',
      probs: number[] | null,
      max: number | null = null,
    ) => {
      const out: string[] = []
      for await (const e of mixExamples([source('a'), source('b')], open, {
        strategy,
        probs,
        seed: 7,
        maxSamples: max,
      }))
        out.push((e.example as { text: string }).text[0]!)
      return out
    }
    const under = await take('interleave_under', [0.8, 0.2])
    const shareA = under.filter((x) => x === 'a').length / under.length
    // Binomial: sd = sqrt(0.16 / n) ≈ 0.005 for n ≈ 7500; 4 sd.
    t.ok(Math.abs(shareA - 0.8) < 0.02, `share of a ${shareA.toFixed(4)} ≈ 0.8`)
    t.equal(under.filter((x) => x === 'a').length, 6000, 'under: stops when a (drawn most) runs out')
    const over = await take('interleave_over', [0.8, 0.2])
    t.ok(over.filter((x) => x === 'b').length >= 6000, 'over: every dataset is used up at least once')
    t.ok(Math.abs(over.filter((x) => x === 'a').length / over.length - 0.8) < 0.02)
    t.equal(
      (await take('interleave_over', [1, 0])).length,
      6000,
      'a dataset with probability 0 does not keep interleave_over going',
    )
    const alternate = await take('interleave_under', null, 3)
    t.same(alternate.join(''), 'ababab', 'without probabilities: in turn; max_samples cuts each dataset')
    t.same((await take('concat', null, 2)).join(''), 'aabb')
    await t.rejects(take('interleave_under', [0.5]), {
      message: /interleave_probs has 1 value\(s\), and there are 2 dataset\(s\)/,
    })
  },
)

t.test('kill -9 while building leaves no store a later run would use, and the next build clears it', async (t) => {
  const dir = t.testdir()
  const corpus = join(dir, 'big.jsonl')
  const lines: string[] = []
  const text = readLines(files.pt).trim().split('\n')
  for (let i = 0; i < 300; i++) lines.push(...text)
  writeFileSync(corpus, `${lines.join('\n')}\n`)
  const path = join(dir, 'tokens')
  const script = join(dir, 'build.ts')
  writeFileSync(
    script,
    `import { prepareTokenData } from ${JSON.stringify(join(REPO_ROOT, 'lib/data/store/token-data.ts'))}\n` +
      `await prepareTokenData(${JSON.stringify(await options({ dataset: [corpus], tokenizedPath: path, workers: 1 }))})\n`,
  )
  const child = spawn(process.execPath, ['--import', 'tsx', script], { cwd: REPO_ROOT, stdio: 'ignore' })
  const temporary = () => readdirSync(dir).filter((e) => e.startsWith('.tokens.tmp-'))
  await new Promise<void>((resolve, reject) => {
    const timer = setInterval(() => {
      if (temporary().length > 0) {
        clearInterval(timer)
        resolve()
      }
    }, 20)
    child.on('exit', () => reject(new Error('the build finished before it could be killed')))
  })
  child.kill('SIGKILL')
  await new Promise((resolve) => child.on('exit', resolve))
  t.notOk(isStore(path), 'no store at tokenized_path')
  t.ok(temporary().length > 0, 'only a temporary folder')
  const warnings: string[] = []
  const data = await prepareTokenData(
    await options({ dataset: [corpus], tokenizedPath: path, warn: (w) => warnings.push(w) }),
  )
  t.notOk(data.reused, 'the next run builds')
  t.same(temporary(), [], 'and removes what the killed one left')
  t.match(warnings.join('\n'), /removed 1 unfinished token store/)
  data.train.close()
})

t.test('disk full while writing: an error naming the folder and the bytes needed, and no partial store', async (t) => {
  // A small file system of its own: a 256 KiB tmpfs (needs root, as the CI container and this project's machines run).
  const { execFileSync } = await import('node:child_process')
  const { mkdtempSync } = await import('node:fs')
  const { tmpdir } = await import('node:os')
  const work = mkdtempSync(join(tmpdir(), 'llamapro-disk-full-'))
  const small = join(work, 'small')
  mkdirSync(small)
  let mounted = false
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=256k', 'tmpfs', small], { stdio: 'ignore' })
    mounted = true
  } catch {
    // not root: this check needs a file system that fills up
  }
  if (!mounted) {
    await t.test(
      'filling a small file system',
      { skip: 'cannot mount a small tmpfs here (not root), so the disk cannot be filled' },
      async () => undefined,
    )
    return
  }
  t.teardown(() => {
    execFileSync('umount', [small])
    rmSync(work, { recursive: true, force: true })
  })
  const corpus = join(work, 'corpus.jsonl')
  const text = readLines(files.pt).trim()
  writeFileSync(corpus, `${Array.from({ length: 40 }, () => text).join('\n')}\n`)
  const path = join(small, 'tokens')
  await t.rejects(prepareTokenData(await options({ dataset: [corpus], tokenizedPath: path, workers: 1 })), {
    message: new RegExp(
      `no space left on the device while writing the token store ${path} \\(in ${small}\\): it needs about [\\d,]+ ` +
        `bytes, [\\d,]+ were written, [\\d,]+ bytes free there now\\. The partial store was removed`,
    ),
  })
  t.same(readdirSync(small), [], 'nothing is left in the folder')
})

t.test(
  'training: a second run starts without tokenizing; with tokenized_path it trains after the data files are deleted; ' +
    'eval_dataset evaluates',
  async (t) => {
    const { train } = await import('../lib/train/trainer.js')
    const { parseTrainConfig } = await import('../lib/train/config.js')
    const dir = t.testdir()
    process.env.LLAMAPRO_TOKEN_CACHE = join(dir, 'cache')
    const corpus = join(dir, 'corpus.jsonl')
    writeFileSync(corpus, readLines(files.pt))
    const evalFile = join(dir, 'held.jsonl')
    writeFileSync(evalFile, readLines(files.pt).split('\n').slice(0, 20).join('\n'))
    const run = async (name: string, raw: Record<string, unknown>) => {
      const messages: string[] = []
      const cfg = parseTrainConfig(
        {
          model_name_or_path: model,
          stage: 'pt',
          cutoff_len: 32,
          per_device_train_batch_size: 2,
          max_steps: 2,
          logging_steps: 1,
          save_steps: 1000,
          threads: 1,
          output_dir: join(dir, name),
          ...raw,
        },
        'test',
        dir,
      )
      const result = await train(cfg, {
        distributed: null,
        onEvent: (e) => (e.type === 'data' || e.type === 'warning') && messages.push(e.message),
      })
      return { result, messages: messages.join('\n') }
    }
    const first = await run('a', { dataset: corpus, eval_dataset: evalFile, eval_strategy: 'steps', eval_steps: 2 })
    t.match(first.messages, /tokenized 120 examples/)
    t.ok(first.result.evalLoss !== null && Number.isFinite(first.result.evalLoss), 'eval_dataset was evaluated')
    const second = await run('b', { dataset: corpus, eval_dataset: evalFile, eval_strategy: 'steps', eval_steps: 2 })
    t.match(second.messages, /loaded the token store .* \(nothing to tokenize\)/)
    t.notMatch(second.messages, /tokenized \d+ examples/, 'nothing was tokenized')
    t.equal(second.result.trainLoss, first.result.trainLoss, 'the same losses from the reused store')
    t.equal(second.result.evalLoss, first.result.evalLoss)
    const tokens = join(dir, 'tokens')
    const third = await run('c', { dataset: corpus, tokenized_path: tokens })
    t.match(third.messages, /saved at/)
    rmSync(corpus)
    const fourth = await run('d', { tokenized_path: tokens })
    t.match(fourth.messages, /are not read/)
    t.equal(fourth.result.trainLoss, third.result.trainLoss, 'trains from the store alone, with the same losses')
    await t.rejects(run('e', { dataset: corpus, eval_dataset: evalFile, val_size: 0.1 }), {
      message: /val_size and eval_dataset are both set/,
    })
    const streamed = await run('f', { tokenized_path: tokens, streaming: true })
    t.match(streamed.messages, /holds a token store: it is read from disk and streaming: true has no effect/)
    t.equal(
      streamed.result.trainLoss,
      third.result.trainLoss,
      'streaming over a saved store reads the store, as LLaMA-Factory',
    )
  },
)
