/**
 * The working folder both tools train in, laid out as LLaMA-Factory's repository is (paths in the YAMLs are
 * relative to it): models/base (a tiny random LLaMA with a ChatML byte-level BPE tokenizer, float32),
 * models/base-pro (its LLaMA-Pro expansion), data/dataset_info.json with an alpaca sft set and a pt text set.
 *
 * usage: npx tsx bench/llamafactory-parity/fixtures.ts <work dir>
 */
import { mkdir, rm, writeFile } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { writeTrainedTokenizer } from '../../lib/data/bpe-trainer.js'
import { corpusA, corpusB } from '../../lib/demo/corpora.js'
import { expandCheckpoint } from '../../lib/expand/expand-checkpoint.js'
import { LlamaModel } from '../../lib/model/llama-model.js'

const work = resolve(process.argv[2] ?? '/tmp/llamapro-lf-parity/work')
const base = join(work, 'models', 'base')
const texts = [...corpusA(300, 31), ...corpusB(300, 32)]
const vocab = await writeTrainedTokenizer(join(work, 'tokenizer'), texts, 384, 256)
const model = await LlamaModel.random(
  {
    architectures: ['LlamaForCausalLM'],
    model_type: 'llama',
    hidden_size: 64,
    intermediate_size: 172,
    num_hidden_layers: 4,
    num_attention_heads: 4,
    num_key_value_heads: 2,
    max_position_embeddings: 256,
    rms_norm_eps: 1e-5,
    rope_theta: 10000,
    tie_word_embeddings: false,
    torch_dtype: 'float32',
    initializer_range: 0.02,
    hidden_act: 'silu',
    vocab_size: vocab,
    eos_token_id: 0,
    pad_token_id: 1,
  },
  { seed: 11 },
)
await model.save(base, { overwrite: true })
model.dispose()
await writeTrainedTokenizer(base, texts, 384, 256)
await rm(join(work, 'tokenizer'), { recursive: true, force: true })
await expandCheckpoint(base, join(work, 'models', 'base-pro'), { numExpand: 2, force: true })

const data = join(work, 'data')
await mkdir(data, { recursive: true })
const alpaca = corpusB(16, 33).map((code, i) => {
  const [signature, body, check] = code.split('\n')
  // One example in four has a system prompt, one in four an input-less instruction.
  return {
    instruction: i % 4 === 1 ? `Write ${signature}` : 'Complete the function.',
    input: i % 4 === 1 ? '' : signature,
    output: `${body}\n${check}`,
    ...(i % 4 === 2 ? { system: 'You write Python.' } : {}),
  }
})
await writeFile(join(data, 'alpaca_demo.json'), `${JSON.stringify(alpaca, null, 2)}\n`)
await writeFile(
  join(data, 'code_demo.jsonl'),
  `${corpusB(48, 34)
    .map((text) => JSON.stringify({ text }))
    .join('\n')}\n`,
)
await writeFile(
  join(data, 'dataset_info.json'),
  `${JSON.stringify(
    {
      alpaca_demo: { file_name: 'alpaca_demo.json' },
      code_demo: { file_name: 'code_demo.jsonl', columns: { prompt: 'text' } },
    },
    null,
    2,
  )}\n`,
)
console.log(
  `fixtures in ${work}: models/base (4 layers, vocab ${vocab}), models/base-pro (6 layers), ` +
    'data/ (16 alpaca examples, 48 texts)',
)
