/**
 * streaming: true — tokenizing while training. The stream gives the sequences the token store holds (in the data's
 * order with a buffer of one, the same multiset shuffled), two ranks read disjoint batches, val_size holds out the
 * stream's first sequences, a run writes no store, and an interrupted run resumes at the same sample.
 */
import t from 'tap'
import { existsSync, readFileSync, readdirSync } from 'node:fs'
import { join } from 'node:path'
import type { TokenStore } from '../lib/data/store/reader.js'
import { type TokenDataOptions, prepareTokenData } from '../lib/data/store/token-data.js'
import { StreamSchedule, openStreaming, shuffleBuffer } from '../lib/data/streaming.js'
import { pretrainTokenizer } from '../lib/data/template.js'
import { loadTokenizer } from '../lib/data/tokenizer.js'
import { parseTrainConfig } from '../lib/train/config.js'
import { train } from '../lib/train/trainer.js'
import { openCheckpoint } from '../lib/checkpoint/checkpoint.js'
import { writeDatasets, writeTrainableModel } from './helpers/trainable-model.js'

const root = t.testdir()
const model = join(root, 'model')
let files: Awaited<ReturnType<typeof writeDatasets>>

t.before(async () => {
  await writeTrainableModel(model)
  files = await writeDatasets(root)
})

async function options(overrides: Partial<TokenDataOptions> = {}): Promise<TokenDataOptions> {
  const data = pretrainTokenizer('default', await loadTokenizer(model))
  return {
    modelDir: model,
    stage: 'pt',
    template: 'default',
    defaultSystem: null,
    enableThinking: true,
    cutoffLen: 48,
    packing: true,
    dataset: [files.pt],
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

function tensorBytes(dir: string) {
  return openCheckpoint(dir).then(
    (c) => new Map(c.tensors.map((x) => [x.name, readFileSync(x.file).subarray(x.offset, x.offset + x.nbytes)])),
  )
}

const rowsOf = (batch: { ids: Int32Array; batch: number; seq: number }) =>
  Array.from({ length: batch.batch }, (_, r) =>
    Array.from(batch.ids.subarray(r * batch.seq, (r + 1) * batch.seq)).join(','),
  )

function storeRows(store: TokenStore): string[] {
  return Array.from({ length: store.length }, (_, i) => Array.from(store.read(i).ids).join(','))
}

t.test(
  'the shuffle buffer: a buffer of one keeps the order, a buffer as large as the data is a seeded shuffle of it',
  async (t) => {
    async function* items(n: number) {
      for (let i = 0; i < n; i++) yield i
    }
    const collect = async (size: number, seed: number) => {
      const out: number[] = []
      for await (const x of shuffleBuffer(items(50), size, seed)) out.push(x)
      return out
    }
    t.same(
      await collect(1, 3),
      Array.from({ length: 50 }, (_, i) => i),
    )
    const full = await collect(100, 3)
    t.same(
      [...full].sort((a, b) => a - b),
      Array.from({ length: 50 }, (_, i) => i),
      'every item once',
    )
    t.notSame(
      full,
      Array.from({ length: 50 }, (_, i) => i),
    )
    t.same(await collect(100, 3), full, 'reproducible from the seed')
    t.notSame(await collect(100, 4), full)
    const partial = await collect(8, 3)
    t.ok(
      partial.slice(0, 8).every((x) => x < 16),
      'a small buffer only reorders nearby items',
    )
  },
)

t.test(
  'the stream gives exactly the token store’s sequences: in order with buffer_size 1, as a shuffle with a large buffer',
  async (t) => {
    const opts = await options()
    const data = await prepareTokenData({ ...opts, tokenizedPath: join(t.testdir(), 'store') })
    const expected = storeRows(data.train)
    data.train.close()
    const take = async (bufferSize: number, seed: number) => {
      const schedule = await openStreaming(opts, {
        bufferSize,
        valSize: 0,
        batchSize: 1,
        seed,
        padId: 0,
        rank: 0,
        worldSize: 1,
      })
      const rows: string[] = []
      for (let i = 0; i < expected.length; i++) rows.push(...rowsOf((await schedule.take(0, i)).batch))
      const nextPass = rowsOf((await schedule.take(0, expected.length)).batch)
      await schedule.close()
      return { rows, nextPass }
    }
    const ordered = await take(1, 42)
    t.same(ordered.rows, expected, 'the data order, sequence by sequence')
    t.same(ordered.nextPass, [expected[0]], 'the second pass starts again at the beginning')
    const shuffled = await take(10_000, 42)
    t.same([...shuffled.rows].sort(), [...expected].sort(), 'every sequence once a pass')
    t.notSame(shuffled.rows, expected, 'shuffled')
  },
)

t.test(
  'two ranks stream disjoint batches whose union is the pass; val_size holds out the first sequences',
  async (t) => {
    const opts = await options()
    const data = await prepareTokenData({ ...opts, tokenizedPath: join(t.testdir(), 'store') })
    const all = storeRows(data.train)
    data.train.close()
    const valSize = 5
    const ranks = await Promise.all(
      [0, 1].map((rank) =>
        openStreaming(opts, { bufferSize: 64, valSize, batchSize: 2, seed: 7, padId: 0, rank, worldSize: 2 }),
      ),
    )
    const held = Array.from({ length: ranks[0]!.evalSource.length }, (_, i) =>
      Array.from(ranks[0]!.evalSource.read(i).ids).join(','),
    )
    t.equal(held.length, valSize)
    const seen: string[][] = [[], []]
    const rounds = Math.floor((all.length - valSize) / 4)
    for (let r = 0; r < 2; r++) {
      for (let i = 0; i < rounds; i++) {
        const { batch, across } = await ranks[r]!.take(0, i)
        seen[r]!.push(...rowsOf(batch))
        t.equal(across.tokens, 4 * 48, 'the counts are of both ranks’ batches')
      }
    }
    await Promise.all(ranks.map((s) => s.close()))
    t.same(
      seen[0]!.filter((x) => seen[1]!.includes(x)),
      [],
      'disjoint',
    )
    const trained = [...seen[0]!, ...seen[1]!]
    t.same(
      trained.filter((x) => held.includes(x)),
      [],
      'no held-out sequence is trained on',
    )
    t.equal(new Set([...trained, ...held]).size, trained.length + held.length)
    t.ok(
      [...trained, ...held].every((x) => all.includes(x)),
      'all of them are the data’s sequences',
    )
  },
)

t.test(
  'training with streaming: true writes no store, evaluates val_size, and resumes at the same sample',
  async (t) => {
    const dir = t.testdir()
    process.env.LLAMAPRO_TOKEN_CACHE = join(dir, 'cache')
    const common = {
      model_name_or_path: model,
      stage: 'pt',
      dataset: files.pt,
      streaming: true,
      buffer_size: 32,
      cutoff_len: 32,
      per_device_train_batch_size: 2,
      max_steps: 6,
      logging_steps: 1,
      threads: 1,
      val_size: 4,
      eval_strategy: 'steps',
      eval_steps: 3,
    }
    const cfg = (raw: Record<string, unknown>) => parseTrainConfig({ ...common, ...raw }, 'test', dir)
    const messages: string[] = []
    const uninterrupted: number[] = []
    const full = await train(cfg({ output_dir: join(dir, 'a') }), {
      onEvent: (e) => {
        if (e.type === 'step') uninterrupted.push(e.loss)
        if (e.type === 'data' || e.type === 'warning') messages.push(e.message)
      },
    })
    t.equal(full.globalStep, 6)
    t.match(messages.join('\n'), /streaming: tokenizing while training .* 4 held out for evaluation/)
    t.ok(full.evalLoss !== null && Number.isFinite(full.evalLoss), 'val_size was evaluated')
    t.notOk(existsSync(join(dir, 'cache')) && readdirSync(join(dir, 'cache')).length > 0, 'no token store was written')

    const controller = new AbortController()
    const before: number[] = []
    await train(cfg({ output_dir: join(dir, 'b') }), {
      signal: controller.signal,
      onEvent: (e) => {
        if (e.type !== 'step') return
        before.push(e.loss)
        if (e.step === 2) controller.abort()
      },
    })
    const after: number[] = []
    await train(cfg({ output_dir: join(dir, 'b'), resume_from_checkpoint: true }), {
      onEvent: (e) => e.type === 'step' && after.push(e.loss),
    })
    t.same([...before, ...after], uninterrupted, 'identical loss sequence')
    const [a, b] = await Promise.all([tensorBytes(join(dir, 'a')), tensorBytes(join(dir, 'b'))])
    t.ok(
      [...a].every(([name, bytes]) => bytes.equals(b.get(name)!)),
      'and identical final weights',
    )
  },
)

t.test('streaming keys are checked as LLaMA-Factory checks them', async (t) => {
  const dir = t.testdir()
  const parse = (raw: Record<string, unknown>) =>
    parseTrainConfig(
      {
        model_name_or_path: model,
        dataset: files.pt,
        output_dir: join(dir, 'o'),
        streaming: true,
        max_steps: 3,
        ...raw,
      },
      'test',
      dir,
    )
  t.throws(() => parse({ max_steps: -1 }), { message: /streaming: true needs max_steps/ })
  t.throws(() => parse({ val_size: 0.1 }), { message: /val_size must be a count of sequences, got 0.1/ })
  t.throws(() => parse({ max_samples: 10 }), { message: /max_samples cannot be used with streaming: true/ })
  t.ok(parse({}).streaming)
  await t.rejects(train(parse({ tokenized_path: join(dir, 'nothing-here') })), {
    message: /holds no token store, and streaming: true writes none/,
  })
})

t.test('a stream is read forward only: an earlier batch cannot be asked for again, the current one can', async (t) => {
  const stream = { bufferSize: 1, valSize: 0, batchSize: 2, seed: 1, padId: 0, rank: 0, worldSize: 1 }
  const schedule = await openStreaming(await options(), stream)
  t.ok(schedule instanceof StreamSchedule)
  const second = rowsOf((await schedule.take(0, 1)).batch)
  t.same(rowsOf((await schedule.take(0, 1)).batch), second, 'the current round is kept')
  await t.rejects(schedule.take(0, 0), { message: /reads its batches in order: batch 0 was asked for after 1/ })
  await schedule.close()
})
