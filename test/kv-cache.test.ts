import t from 'tap'
import { join } from 'node:path'
import { LlamaModel } from '../lib/index.js'
import { KvCache } from '../lib/generate/kv-cache.js'
import { native } from '../lib/native/load.js'
import { randomTokenIds } from '../lib/util/random.js'
import { GENERATION_VARIANTS as VARIANTS } from './helpers/generation-variants.js'
import { writeTinyModel } from './helpers/tiny-model.js'

t.test('logits of the cached path equal the full forward at every position (float32, 1e-5)', async (t) => {
  const dir = t.testdir()
  for (const [name, options] of Object.entries(VARIANTS)) {
    const fixture = await writeTinyModel(join(dir, name), options)
    const model = await LlamaModel.load(fixture.dir)
    const vocab = fixture.config.vocabSize
    const ids = Array.from(randomTokenIds(19, vocab, 21))
    const full = (await model.forward([ids])).logits
    // Prefill 6, then one token at a time, then a chunk of 4, then single tokens again: every path of the mask.
    const chunks = [
      ids.slice(0, 6),
      ...ids.slice(6, 11).map((id) => [id]),
      ids.slice(11, 15),
      ...ids.slice(15).map((id) => [id]),
    ]
    const cache = new KvCache(model)
    let position = 0
    let worst = 0
    for (const chunk of chunks) {
      const logits = await cache.step(chunk, { allLogits: true })
      t.equal(logits.length, chunk.length * vocab)
      for (let i = 0; i < logits.length; i++)
        worst = Math.max(worst, Math.abs(logits[i]! - full[position * vocab + i]!))
      position += chunk.length
    }
    t.equal(cache.length, ids.length)
    t.ok(worst < 1e-5, `${name}: max |cached - full| = ${worst.toExponential(2)} over ${ids.length} positions`)
    // Truncating to a prefix and feeding the rest again gives the same last logits.
    cache.truncate(10)
    const again = await cache.step(ids.slice(10))
    let worstAgain = 0
    for (let i = 0; i < vocab; i++)
      worstAgain = Math.max(worstAgain, Math.abs(again[i]! - full[(ids.length - 1) * vocab + i]!))
    t.ok(worstAgain < 1e-5, `${name}: after truncate(10) the last logits agree (${worstAgain.toExponential(2)})`)
    cache.dispose()
    model.dispose()
  }
})

t.test('the cache rejects what would read out of bounds, with clear errors', async (t) => {
  const fixture = await writeTinyModel(join(t.testdir(), 'm'), { seed: 2 })
  const model = await LlamaModel.load(fixture.dir)
  const cache = new KvCache(model)
  // The native constructor checks what it is given before unwrapping it (another wrapped object would crash).
  const NativeKvCache = native().NativeKvCache as unknown as new (model: unknown) => unknown
  t.throws(() => new NativeKvCache({}), { code: 'LLAMAPRO_ARG', message: /must be a NativeModel/ })
  t.throws(() => new NativeKvCache(new NativeKvCache(model.native)), {
    code: 'LLAMAPRO_ARG',
    message: /must be a NativeModel/,
  })
  await t.rejects(cache.step([96]), { code: 'LLAMAPRO_ARG', message: /not in the vocabulary \(0\.\.95\)/ })
  await t.rejects(cache.step([]), { code: 'LLAMAPRO_ARG' })
  t.throws(() => cache.truncate(1), { code: 'LLAMAPRO_ARG' })
  await cache.step([1, 2, 3])
  const pending = cache.step([4])
  await t.rejects(cache.step([5]), { code: 'LLAMAPRO_BUSY' })
  await pending
  t.equal(cache.length, 4)
  // Blocks inserted after the cache was made: its per-layer tensors no longer match, so it refuses to step.
  await model.insertBlocks([1])
  await t.rejects(cache.step([5]), { message: /layers changed .* make a new cache/ })
  const fresh = new KvCache(model)
  t.equal((await fresh.step([1, 2])).length, 96)
  fresh.dispose()
  model.dispose()
  await t.rejects(cache.step([5]), { code: 'LLAMAPRO_DISPOSED' })
  cache.dispose()
  await t.rejects(cache.step([5]), { code: 'LLAMAPRO_DISPOSED' })
})

t.test('bfloat16 decoding through the cache is as close to float32 as the bfloat16 full forward', async (t) => {
  // float16 matmuls need LibTorch >= 2 on the CPU (1.13 has no Half addmm there), so the CPU check is bfloat16.
  const fixture = await writeTinyModel(join(t.testdir(), 'm'), {
    kvHeads: 2,
    seed: 4,
    modelType: 'mistral',
    config: { sliding_window: 6 },
  })
  const vocab = fixture.config.vocabSize
  const ids = Array.from(randomTokenIds(14, vocab, 5))
  const reference = await LlamaModel.load(fixture.dir)
  const exact = (await reference.forward([ids])).logits
  reference.dispose()
  const model = await LlamaModel.load(fixture.dir, { dtype: 'bfloat16' })
  const full = (await model.forward([ids])).logits
  const cache = new KvCache(model)
  const cached = new Float32Array(ids.length * vocab)
  cached.set(await cache.step(ids.slice(0, 5), { allLogits: true }), 0)
  for (let i = 5; i < ids.length; i++) cached.set(await cache.step([ids[i]!]), i * vocab)
  const worst = (a: Float32Array) => a.reduce((m, x, i) => Math.max(m, Math.abs(x - exact[i]!)), 0)
  const scale = exact.reduce((m, x) => Math.max(m, Math.abs(x)), 0)
  const [fullError, cachedError] = [worst(full), worst(cached)]
  t.ok(
    cachedError <= 2 * fullError,
    `bfloat16 vs float32: cached ${cachedError.toFixed(4)}, full forward ${fullError.toFixed(4)} (logits up to ` +
      `${scale.toFixed(2)})`,
  )
  cache.dispose()
  model.dispose()
})
