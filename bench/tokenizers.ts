/**
 * Which tokenizer library is faster per core on real text, with the same ids: npm `tokenizers` (Hugging Face's
 * Rust tokenizers for Node, napi-rs) against @huggingface/tokenizers (JavaScript), on a model's tokenizer.json.
 *
 *   npx tsx bench/tokenizers.ts /tmp/smol     (a folder with tokenizer.json, e.g. SmolLM2 after llamapro import)
 *
 * One core: TOKENIZERS_PARALLELISM=false and RAYON_NUM_THREADS=1 are set before the Rust library runs. The two
 * are timed alternately, twice, in one process; on a loaded machine only the ratio within a round means much.
 */
import { readFileSync, readdirSync } from 'node:fs'
import { join } from 'node:path'

process.env.TOKENIZERS_PARALLELISM = 'false'
process.env.RAYON_NUM_THREADS = '1'
const { Tokenizer: JsTokenizer } = await import('@huggingface/tokenizers')
const { Tokenizer: RustTokenizer } = await import('tokenizers')

const dir = process.argv[2] ?? '/tmp/smol'
const js = new JsTokenizer(
  JSON.parse(readFileSync(join(dir, 'tokenizer.json'), 'utf8')),
  JSON.parse(readFileSync(join(dir, 'tokenizer_config.json'), 'utf8')),
)
const rust = RustTokenizer.fromFile(join(dir, 'tokenizer.json'))
// Real text: TypeScript's declaration files (prose comments and code), cut into 1500-character documents.
const src = join(import.meta.dirname, '..', 'node_modules', 'typescript', 'lib')
const text = readdirSync(src)
  .filter((f) => f.endsWith('.d.ts'))
  .map((f) => readFileSync(join(src, f), 'utf8'))
  .join('\n')
const docs: string[] = []
for (let i = 0; i < text.length && docs.length < 2500; i += 1500) docs.push(text.slice(i, i + 1500))
const megabytes = docs.reduce((s, d) => s + Buffer.byteLength(d), 0) / 1e6
let mismatches = 0
for (const d of docs) {
  const a = js.encode(d, { add_special_tokens: false }).ids
  const b = (await rust.encode(d, null, { addSpecialTokens: false })).getIds()
  if (a.join() !== b.join()) mismatches++
}
console.log(`${docs.length} documents, ${megabytes.toFixed(2)} MB; documents whose ids differ: ${mismatches}`)
const cpuSeconds = (start: NodeJS.CpuUsage) => {
  const u = process.cpuUsage(start)
  return (u.user + u.system) / 1e6
}
for (let round = 1; round <= 2; round++) {
  let cpu = process.cpuUsage()
  for (const d of docs) js.encode(d, { add_special_tokens: false })
  const jsCpu = cpuSeconds(cpu)
  cpu = process.cpuUsage()
  for (let i = 0; i < docs.length; i += 256) await rust.encodeBatch(docs.slice(i, i + 256), { addSpecialTokens: false })
  const rustCpu = cpuSeconds(cpu)
  console.log(
    `round ${round}: @huggingface/tokenizers ${(megabytes / jsCpu).toFixed(2)} MB per CPU-second, tokenizers (Rust) ` +
      `${(megabytes / rustCpu).toFixed(2)} MB per CPU-second: ${(jsCpu / rustCpu).toFixed(1)}×`,
  )
}
