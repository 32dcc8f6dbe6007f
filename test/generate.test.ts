import t from 'tap'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { LlamaModel } from '../lib/index.js'
import { generate } from '../lib/generate/generate.js'
import { KvCache } from '../lib/generate/kv-cache.js'
import { argmax, pickToken, samplerRandom } from '../lib/generate/sampling.js'
import { loadTokenizer } from '../lib/data/tokenizer.js'
import { generationPrompt } from '../lib/generate/prompt.js'
import { randomTokenIds } from '../lib/util/random.js'
import { GENERATION_VARIANTS } from './helpers/generation-variants.js'
import { pythonSnippet } from './helpers/python.js'
import { writeTinyModel } from './helpers/tiny-model.js'
import { writeTrainableModel } from './helpers/trainable-model.js'

// One Python process for every model (importing torch costs seconds): greedy tokens with the KV-cache loop
// and with the cache-free loop of bench/reference/llama_ref.py.
const PYTHON_GREEDY = `
import json, sys
sys.path.insert(0, "bench/reference")
import llama_ref
req = json.load(sys.stdin)
out = {}
for d in req["dirs"]:
    model = llama_ref.load_model(d)
    out[d] = {str(c): [llama_ref.greedy_generate(model, p, req["max_new_tokens"], use_cache=c)[0] for p in req["prompts"]] for c in (True, False)}
print(json.dumps(out))
`

t.test(
  'greedy output equals an independent PyTorch KV-cache loop (and its cache-free check), token for token',
  async (t) => {
    const dir = t.testdir()
    const prompts = [Array.from(randomTokenIds(9, 96, 31)), Array.from(randomTokenIds(3, 96, 32))]
    const maxNewTokens = 24
    const ours = new Map<string, number[][]>()
    for (const [name, options] of Object.entries(GENERATION_VARIANTS)) {
      const fixture = await writeTinyModel(join(dir, name), { std: 0.3, ...options })
      const model = await LlamaModel.load(fixture.dir)
      const outputs: number[][] = []
      for (const prompt of prompts) {
        const result = await generate(model, { ids: prompt }, { maxNewTokens, temperature: 0, stopTokenIds: [] })
        t.equal(result.finishReason, 'length')
        outputs.push(result.tokenIds)
      }
      model.dispose()
      ours.set(fixture.dir, outputs)
      // Not a degenerate sequence: the comparison would prove little if every token were the same.
      t.ok(new Set(outputs[0]).size > 3, `${name}: ${new Set(outputs[0]).size} distinct tokens`)
    }
    const ref = await pythonSnippet<Record<string, Record<string, number[][]>>>(PYTHON_GREEDY, {
      dirs: [...ours.keys()],
      prompts,
      max_new_tokens: maxNewTokens,
    })
    for (const [modelDir, outputs] of ours) {
      const name = modelDir.split('/').pop()
      t.same(outputs, ref[modelDir]!.True, `${name}: ${maxNewTokens} greedy tokens equal PyTorch's (KV cache)`)
      t.same(outputs, ref[modelDir]!.False, `${name}: ${maxNewTokens} greedy tokens equal PyTorch's (no cache)`)
    }
  },
)

t.test('sampling: a fixed seed reproduces, top_k=1 is greedy, and draws follow the softmax', async (t) => {
  const fixture = await writeTinyModel(join(t.testdir(), 'm'), { kvHeads: 2, seed: 13, std: 0.3 })
  const model = await LlamaModel.load(fixture.dir)
  const prompt = { ids: [5, 17, 33, 2, 70] }
  const base = { maxNewTokens: 16, stopTokenIds: [] as number[] }
  const a = await generate(model, prompt, { ...base, temperature: 1.2, seed: 7 })
  const b = await generate(model, prompt, { ...base, temperature: 1.2, seed: 7 })
  const c = await generate(model, prompt, { ...base, temperature: 1.2, seed: 8 })
  t.same(a.tokenIds, b.tokenIds, 'same seed, same tokens')
  t.equal(a.seed, 7)
  t.not(a.tokenIds.join(','), c.tokenIds.join(','), 'another seed, other tokens')
  const greedy = await generate(model, prompt, { ...base, temperature: 0 })
  const topK1 = await generate(model, prompt, { ...base, temperature: 1.5, topK: 1, seed: 3 })
  t.same(topK1.tokenIds, greedy.tokenIds, 'top_k = 1 is greedy')
  const tinyP = await generate(model, prompt, { ...base, temperature: 1, topK: 0, topP: 1e-6, seed: 4 })
  t.same(tinyP.tokenIds, greedy.tokenIds, 'top_p near 0 keeps only the most likely token')
  model.dispose()

  // Empirical frequencies of 20000 draws against the softmax of fixed logits.
  const logits = Float32Array.from([2, 1, 0.5, 0, -1, -3])
  const draws = 20000
  const counts = new Array(logits.length).fill(0)
  const random = samplerRandom(11)
  for (let i = 0; i < draws; i++)
    counts[pickToken(logits.slice(), new Set(), { temperature: 1, topK: 0, topP: 1, repetitionPenalty: 1 }, random)]++
  const z = [...logits].reduce((s, x) => s + Math.exp(x), 0)
  const worst = Math.max(...[...logits].map((x, i) => Math.abs(counts[i] / draws - Math.exp(x) / z)))
  t.ok(worst < 0.015, `frequencies within 1.5% of the softmax (worst ${worst.toFixed(4)})`)
  // top_k = 2 draws only the two largest; top_p = 0.8 only the smallest set reaching 80% (ids 0, 1, 2 here).
  const seenK = new Set<number>()
  const seenP = new Set<number>()
  for (let i = 0; i < 2000; i++) {
    seenK.add(pickToken(logits.slice(), new Set(), { temperature: 1, topK: 2, topP: 1, repetitionPenalty: 1 }, random))
    seenP.add(
      pickToken(logits.slice(), new Set(), { temperature: 1, topK: 0, topP: 0.8, repetitionPenalty: 1 }, random),
    )
  }
  t.same([...seenK].sort(), [0, 1])
  t.same([...seenP].sort(), [0, 1, 2])
  // Repetition penalty as transformers: positive scores divided, negative multiplied.
  const penalised = Float32Array.from([2, -1, 1.5])
  t.equal(argmax(penalised), 0)
  t.equal(pickToken(penalised, new Set([0, 1]), { temperature: 0, topK: 0, topP: 1, repetitionPenalty: 2 }, random), 2)
  t.same([...penalised], [1, -2, 1.5])
})

t.test('the event loop keeps running during generation, and an AbortSignal stops it', async (t) => {
  const fixture = await writeTinyModel(join(t.testdir(), 'm'), { seed: 17, layers: 6, hidden: 64, intermediate: 128 })
  const model = await LlamaModel.load(fixture.dir)
  let ticks = 0
  const timer = setInterval(() => ticks++, 1)
  const started = performance.now()
  const result = await generate(model, { ids: [1, 2, 3] }, { maxNewTokens: 120, stopTokenIds: [] })
  const elapsed = performance.now() - started
  clearInterval(timer)
  t.equal(result.tokenIds.length, 120)
  t.ok(ticks >= Math.min(10, elapsed / 10), `${ticks} timer ticks during ${elapsed.toFixed(0)} ms of generation`)

  const controller = new AbortController()
  const streamed: number[] = []
  const aborted = await generate(
    model,
    { ids: [1, 2, 3] },
    {
      maxNewTokens: 100,
      stopTokenIds: [],
      signal: controller.signal,
      onToken: (chunk) => {
        streamed.push(chunk.tokenId!)
        if (streamed.length === 3) controller.abort()
      },
    },
  )
  t.equal(aborted.finishReason, 'aborted')
  t.same(aborted.tokenIds, result.tokenIds.slice(0, 3), 'stops after the token during which it was aborted')
  t.same(streamed, aborted.tokenIds)

  // A stop token ends the reply (not included), and the stream as an async iterator yields the same tokens.
  const stopAt = result.tokenIds[5]!
  const stopped = await generate(model, { ids: [1, 2, 3] }, { maxNewTokens: 100, stopTokenIds: [stopAt] })
  t.equal(stopped.finishReason, 'stop')
  t.equal(stopped.stoppedBy, stopAt)
  t.same(stopped.tokenIds, result.tokenIds.slice(0, result.tokenIds.indexOf(stopAt)))
  const iterated: number[] = []
  const stream = model.generateStream({ ids: [1, 2, 3] }, { maxNewTokens: 7, stopTokenIds: [] })
  for await (const chunk of stream) iterated.push(chunk.tokenId!)
  t.same(iterated, result.tokenIds.slice(0, 7))
  model.dispose()
})

t.test('chat messages use the training templates; stop words from generation_config and stop strings', async (t) => {
  const dir = t.testdir()
  const fixture = await writeTrainableModel(dir, { seed: 19, std: 0.3 })
  const tokenizer = await loadTokenizer(dir)
  const model = await LlamaModel.load(fixture.dir)
  const messages = [
    { role: 'system' as const, content: 'Be brief.' },
    { role: 'user' as const, content: 'Tell me about an animal.' },
  ]
  // `default`: LLaMA-Factory's slots, the generation prompt ends with "\nAssistant:".
  const byDefault = await generate(model, messages, { template: 'default', maxNewTokens: 12, stopTokenIds: [] })
  const expected = [
    ...tokenizer.encode('System: Be brief.'),
    tokenizer.eosId,
    ...tokenizer.encode('\n'),
    ...tokenizer.encode('Human: Tell me about an animal.'),
    tokenizer.eosId,
    ...tokenizer.encode('\nAssistant:'),
  ]
  t.same(byDefault.promptTokenIds, expected)
  // The model's own (ChatML) template with add_generation_prompt.
  const own = await generate(model, messages, { maxNewTokens: 12, stopTokenIds: [] })
  t.same(
    own.promptTokenIds,
    tokenizer.encode(
      '<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nTell me about an ' +
        'animal.<|im_end|>\n<|im_start|>assistant\n',
    ),
  )
  t.equal(own.text, tokenizer.decode(own.tokenIds))
  // The template's end of turn stops a reply: ChatML's <|im_end|>; `default` ends replies with EOS alone.
  // (the template's stop words include the tokenizer's EOS text, which is a stop token id anyway)
  t.same(generationPrompt('model', messages, tokenizer, () => {}).stopWords, [tokenizer.eosToken, '<|im_end|>'])
  t.same(generationPrompt('default', messages, tokenizer, () => {}).stopWords, [tokenizer.eosToken])

  // A stop string cuts the text where it starts; the streamed text is exactly the final text.
  const full = own.text
  t.ok(full.length > 6, `generated ${JSON.stringify(full)}`)
  const stop = full.slice(3, 5)
  let streamed = ''
  const cut = await generate(model, messages, {
    maxNewTokens: 12,
    stopTokenIds: [],
    stop: [stop],
    onToken: (c) => (streamed += c.text),
  })
  t.equal(cut.finishReason, 'stop')
  t.equal(cut.stoppedBy, stop)
  t.equal(cut.text, full.slice(0, full.indexOf(stop)))
  t.equal(streamed, cut.text)

  // generation_config.json eos_token_id as a list: any of them stops (a fresh load reads the file).
  const second = own.tokenIds[2]!
  await writeFile(join(dir, 'generation_config.json'), JSON.stringify({ eos_token_id: [tokenizer.eosId, second] }))
  const reloaded = await LlamaModel.load(dir)
  const stopped = await reloaded.generate(messages, { maxNewTokens: 12 })
  t.equal(stopped.stoppedBy, second)
  t.same(stopped.tokenIds, own.tokenIds.slice(0, own.tokenIds.indexOf(second)))

  // A reused cache feeds only what is new, and answers the same.
  const cache = new KvCache(reloaded)
  const first = await generate(reloaded, messages, { maxNewTokens: 4, stopTokenIds: [], cache })
  const followUp = [
    ...messages,
    { role: 'assistant' as const, content: first.text },
    { role: 'user' as const, content: 'More.' },
  ]
  const warm = await generate(reloaded, followUp, { maxNewTokens: 6, stopTokenIds: [], cache })
  const cold = await generate(reloaded, followUp, { maxNewTokens: 6, stopTokenIds: [] })
  t.ok(
    warm.timings.prefillTokens < cold.timings.prefillTokens,
    `prefill ${warm.timings.prefillTokens} tokens instead of ${cold.timings.prefillTokens}`,
  )
  t.same(warm.tokenIds, cold.tokenIds)
  cache.dispose()

  await t.rejects(generate(reloaded, [{ role: 'assistant', content: 'x' }]), {
    code: 'LLAMAPRO_ARG',
    message: /end with a user message|alternate/,
  })
  await t.rejects(generate(reloaded, 'hi', { temperature: -1 }), { code: 'LLAMAPRO_ARG', message: /temperature/ })
  await t.rejects(generate(reloaded, { ids: [100000] }), { code: 'LLAMAPRO_ARG', message: /outside the vocabulary/ })
  model.dispose()
  reloaded.dispose()
})
