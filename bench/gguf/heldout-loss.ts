/**
 * Held-out loss of a model folder on JSONL texts ({"text": ...}): each text is tokenized with the folder's own
 * tokenizer (EOS appended), cut into blocks of --seq tokens, and the loss averaged over every predicted token.
 * Usage: npx tsx bench/gguf/heldout-loss.ts <model_dir> <texts.jsonl> [--seq 128] [--batch 4]
 */
import { readFileSync } from 'node:fs'
import { parseArgs } from 'node:util'
import { loadTokenizer } from '../../lib/data/tokenizer.js'
import { LlamaModel } from '../../lib/index.js'

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: { seq: { type: 'string', default: '128' }, batch: { type: 'string', default: '4' } },
})
const [dir, file] = positionals
const seq = Number(values.seq)
const batchSize = Number(values.batch)
const tokenizer = await loadTokenizer(dir!)
const blocks: number[][] = []
for (const line of readFileSync(file!, 'utf8').split('\n')) {
  if (!line.trim()) continue
  const ids = [...tokenizer.encode((JSON.parse(line) as { text: string }).text), tokenizer.eosId]
  for (let i = 0; i + seq <= ids.length; i += seq) blocks.push(ids.slice(i, i + seq))
  const rest = ids.length % seq
  if (rest >= 16) blocks.push([...ids.slice(ids.length - rest), ...Array(seq - rest).fill(-1)])
}
const model = await LlamaModel.load(dir!, { dtype: 'float32' })
let sum = 0
let tokens = 0
const started = performance.now()
for (let i = 0; i < blocks.length; i += batchSize) {
  const batch = blocks.slice(i, i + batchSize)
  const ids = batch.map((b) => b.map((x) => (x < 0 ? tokenizer.padId : x)))
  const labels = batch.map((b) => b.map((x) => (x < 0 ? -100 : x)))
  const r = await model.lossDetail(ids, labels)
  sum += r.loss * r.tokens
  tokens += r.tokens
}
model.dispose()
console.log(
  JSON.stringify({
    dir,
    file,
    loss: sum / tokens,
    tokens,
    blocks: blocks.length,
    seconds: (performance.now() - started) / 1000,
  }),
)
