/**
 * Decode speed with a KV cache: llamapro's generate() against a PyTorch-eager KV-cache loop
 * (bench/reference/llama_ref.py generate: transformers' DynamicCache pattern, greedy), same random model, same
 * prompts, same thread count, in one run. Both are greedy and must produce the same tokens (checked).
 *   prefill: the whole prompt through the cache to the first token's logits
 *   decode:  tokens per second over the single-token steps after it
 * Usage: npm run build && OPENBLAS_NUM_THREADS=1 npx tsx bench/generate.ts [--prompt 128] [--new 64] [--repeats 3]
 * [--presets tiny,small,base]
 * OPENBLAS_NUM_THREADS=1 gives both sides one BLAS thread: PyTorch's set_num_threads(1) makes its OpenBLAS
 * single-threaded, while llamapro by default keeps OpenBLAS's own threads (2 here), which on a loaded 2-core
 * machine would compare different thread counts.
 */
import { execFileSync } from 'node:child_process'
import { mkdirSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { LlamaModel, info } from '../lib/index.js'
import { describeMachine, machineInfo } from '../lib/bench/machine.js'
import { generate } from '../lib/generate/generate.js'
import { randomTokenIds } from '../lib/util/random.js'
import { writeResult } from './lib/results.js'

const PRESETS: Record<string, Record<string, unknown>> = {
  tiny: {
    hidden_size: 128,
    intermediate_size: 344,
    num_hidden_layers: 4,
    num_attention_heads: 4,
    num_key_value_heads: 2,
    vocab_size: 4096,
  },
  small: {
    hidden_size: 256,
    intermediate_size: 688,
    num_hidden_layers: 8,
    num_attention_heads: 8,
    num_key_value_heads: 4,
    vocab_size: 8192,
  },
  base: {
    hidden_size: 768,
    intermediate_size: 2048,
    num_hidden_layers: 12,
    num_attention_heads: 12,
    num_key_value_heads: 4,
    vocab_size: 32000,
  },
}

const { values } = parseArgs({
  options: {
    prompt: { type: 'string', default: '128' },
    new: { type: 'string', default: '64' },
    repeats: { type: 'string', default: '3' },
    presets: { type: 'string', default: 'tiny,small,base' },
    dir: { type: 'string', default: '/tmp/llamapro-bench-generate' },
  },
})
const promptLength = Number(values.prompt)
const newTokens = Number(values.new)
const repeats = Number(values.repeats)
const dir = values.dir!
const threads = info().threads.intraOp
const blasThreads = info().threads.blas
const python = process.env.LLAMAPRO_BENCH_PYTHON ?? '.venv/bin/python'

interface Side {
  prefillMs: number
  decodeTokensPerSecond: number
  perTokenMs: number
}
const rows: { preset: string; parameters: number; ours: Side; torch: Side; sameTokens: boolean }[] = []
rmSync(dir, { recursive: true, force: true })
for (const preset of values.presets!.split(',')) {
  const config: Record<string, unknown> = {
    architectures: ['LlamaForCausalLM'],
    model_type: 'llama',
    max_position_embeddings: 2048,
    rms_norm_eps: 1e-5,
    rope_theta: 10000,
    tie_word_embeddings: false,
    torch_dtype: 'float32',
    bos_token_id: 1,
    eos_token_id: 2,
    hidden_act: 'silu',
    ...PRESETS[preset],
  }
  const modelDir = join(dir, preset)
  const random = await LlamaModel.random(config, { seed: 1, std: 0.05 })
  await random.save(modelDir)
  const parameters = random.parameters().reduce((s, p) => s + p.numel, 0)
  random.dispose()
  const prompt = Array.from(randomTokenIds(promptLength, config.vocab_size as number, 7))

  // Alternating runs (llamapro, then PyTorch, repeats times): this shared machine's speed drifts between runs,
  // so each side gets the same mix of quiet and busy moments. The faster run of each side counts.
  const model = await LlamaModel.load(modelDir)
  await generate(model, { ids: prompt.slice(0, 8) }, { maxNewTokens: 4, stopTokenIds: [] }) // warm-up
  const specFile = join(dir, `${preset}.json`)
  mkdirSync(dir, { recursive: true })
  // The 8-token prompt is PyTorch's warm-up (each run is a fresh process).
  writeFileSync(
    specFile,
    JSON.stringify({ prompts: [prompt.slice(0, 8), prompt], max_new_tokens: newTokens, repeats: 1, threads }),
  )
  let best: { prefill: number; decode: number; tokens: number[] } | undefined
  let torchBest: { prefill: number; decode: number; tokens: number[] } | undefined
  for (let r = 0; r < repeats; r++) {
    const result = await generate(model, { ids: prompt }, { maxNewTokens: newTokens, temperature: 0, stopTokenIds: [] })
    const run = {
      prefill: result.timings.prefillMs,
      decode: result.timings.decodeMs / result.timings.decodeSteps,
      tokens: result.tokenIds,
    }
    if (!best || run.prefill + run.decode * newTokens < best.prefill + best.decode * newTokens) best = run
    const ref = JSON.parse(
      execFileSync(python, ['bench/reference/llama_ref.py', 'generate', modelDir, specFile], {
        encoding: 'utf8',
        maxBuffer: 1 << 26,
      }),
    ) as {
      outputs: number[][]
      prefill_s: number[]
      decode_s: number[]
    }
    const torchRun = {
      prefill: ref.prefill_s[1]! * 1000,
      decode: (ref.decode_s[1]! * 1000) / (newTokens - 1),
      tokens: ref.outputs[1]!,
    }
    if (!torchBest || torchRun.prefill + torchRun.decode * newTokens < torchBest.prefill + torchBest.decode * newTokens)
      torchBest = torchRun
  }
  model.dispose()
  const torchPrefill = torchBest!.prefill
  const torchPerToken = torchBest!.decode
  rows.push({
    preset,
    parameters,
    ours: { prefillMs: best!.prefill, perTokenMs: best!.decode, decodeTokensPerSecond: 1000 / best!.decode },
    torch: { prefillMs: torchPrefill, perTokenMs: torchPerToken, decodeTokensPerSecond: 1000 / torchPerToken },
    sameTokens: JSON.stringify(torchBest!.tokens) === JSON.stringify(best!.tokens),
  })
  console.log(preset, JSON.stringify(rows[rows.length - 1]))
}
rmSync(dir, { recursive: true, force: true })

const machine = machineInfo()
const command = `npm run build && ${process.env.OPENBLAS_NUM_THREADS ? `OPENBLAS_NUM_THREADS=${process.env.OPENBLAS_NUM_THREADS} ` : ''}npx tsx bench/generate.ts --prompt ${promptLength} --new ${newTokens} --repeats ${repeats} --presets ${values.presets}`
const md = [
  '# Generation with a KV cache: llamapro vs PyTorch eager',
  '',
  `Machine: ${describeMachine(machine)}`,
  `Command: \`${command}\``,
  `Greedy, batch 1, float32 on the CPU, prompt ${promptLength} tokens, ${newTokens} new tokens; ${threads} intra-op ` +
    `thread(s) on both sides, llamapro's BLAS threads: ${blasThreads ?? 'unknown'};`,
  `the faster of ${repeats} runs each, the two sides alternating run by run. Baseline: ` +
    `\`bench/reference/llama_ref.py generate\` (PyTorch ${'eager'}, the KV cache`,
  "concatenated per step as transformers' DynamicCache, argmax on the last logits). llamapro: `generate()`, one " +
    'native call',
  'per token, sampling and stop checks in TypeScript, the time measured from JavaScript (so it includes the worker ' +
    'hop).',
  '',
  '| model | parameters | prefill llamapro | prefill PyTorch | ratio | decode llamapro | decode PyTorch | speed-up | ' +
    'same tokens |',
  '|---|---|---|---|---|---|---|---|---|',
  ...rows.map(
    (r) =>
      `| ${r.preset} | ${(r.parameters / 1e6).toFixed(1)} M | ${r.ours.prefillMs.toFixed(1)} ms | ` +
      `${r.torch.prefillMs.toFixed(1)} ms | ${(r.ours.prefillMs / r.torch.prefillMs).toFixed(2)} | ` +
      `${r.ours.decodeTokensPerSecond.toFixed(0)} tok/s (${r.ours.perTokenMs.toFixed(2)} ms) | ` +
      `${r.torch.decodeTokensPerSecond.toFixed(0)} tok/s (${r.torch.perTokenMs.toFixed(2)} ms) | ` +
      `${(r.ours.decodeTokensPerSecond / r.torch.decodeTokensPerSecond).toFixed(2)}x | ${r.sameTokens ? 'yes' : 'NO'} |`,
  ),
  '',
  'Goal: faster than PyTorch eager per token (speed-up > 1). The machine is shared; figures vary between runs.',
].join('\n')
await writeResult(
  'generate',
  { benchmark: 'generate', command, machine, promptLength, newTokens, repeats, threads, blasThreads, rows },
  md,
)
console.log(md)
