// The native model spec and its size limits have one source of truth each side reads: lib/model/native-spec.ts
// builds the spec, CONFIG_LIMITS (lib/checkpoint/config.ts) bounds config.json, and native/native_model.cc checks
// the same bounds again before it allocates. These tests keep the two sides from drifting apart: every field lib/
// sends is one the addon requires, and every limit + 1 reaches the addon only to be refused with the same number.
import t from 'tap'
import { CONFIG_LIMITS, parseModelConfig } from '../lib/checkpoint/config.js'
import { nativeSpec } from '../lib/model/native-spec.js'
import type { NativeModelSpec } from '../lib/native/binding.js'
import { native } from '../lib/native/load.js'
import { tinyRawConfig } from './helpers/tiny-model.js'

const OPTIONS = { device: 'cpu', dtype: 'float32' }
const spec = (): NativeModelSpec => nativeSpec(parseModelConfig(tinyRawConfig(), 'config.json'))
const create = (s: unknown) => native().NativeModel.create(s as NativeModelSpec, OPTIONS)

/** Which spec field each CONFIG_LIMITS key bounds; max_position_embeddings bounds lib/ only (the addon has no position table). */
const LIMITED: Record<keyof typeof CONFIG_LIMITS, keyof NativeModelSpec | null> = {
  vocab_size: 'vocabSize',
  hidden_size: 'hiddenSize',
  intermediate_size: 'intermediateSize',
  num_hidden_layers: 'numLayers',
  num_attention_heads: 'numHeads',
  num_key_value_heads: 'numKvHeads',
  head_dim: 'headDim',
  max_position_embeddings: null,
}

t.test('each CONFIG_LIMITS value + 1 is refused by the native constructor, which names the field and the same limit', async (t) => {
  for (const [key, field] of Object.entries(LIMITED)) {
    if (field === null) continue
    const limit = CONFIG_LIMITS[key as keyof typeof CONFIG_LIMITS]
    t.throws(() => parseModelConfig({ ...tinyRawConfig(), [key]: limit + 1 }, 'config.json'), { message: new RegExp(`"${key}" is ${limit + 1}, above the largest llamapro supports \\(${limit}\\)`) }, `lib/ refuses ${key} = ${limit} + 1`)
    const over = { ...spec(), [field]: limit + 1 }
    t.throws(() => create(over), { name: 'TypeError', message: `spec.${field} is ${limit + 1}, above llamapro's limit ${limit} (CONFIG_LIMITS in lib/checkpoint/config.ts)` })
    // At the limit the size check passes: the next check (a bad rope type, read after the sizes) is what fails, so
    // nothing of the limit's size is allocated.
    const at = { ...spec(), [field]: limit, rope: { ...spec().rope, type: 'not-a-rope' } }
    t.throws(() => create(at), { name: 'TypeError', message: /spec\.rope\.type must be default, linear or llama3|spec\.numHeads must be a multiple|spec\.slidingWindows must have one entry per layer/ }, `spec.${field} = ${limit} passes the size check`)
  }
  t.same(Object.keys(LIMITED).sort(), Object.keys(CONFIG_LIMITS).sort(), 'every limit is mapped')
})

t.test('every field lib/ sends in the spec is one the addon reads (dropping it is a TypeError naming it)', async (t) => {
  const full = spec()
  for (const field of Object.keys(full) as (keyof NativeModelSpec)[]) {
    const { [field]: _dropped, ...rest } = full
    t.throws(() => create(rest), { name: 'TypeError', message: new RegExp(`^spec\\.${field} must be`) }, `without spec.${field}`)
  }
  for (const field of Object.keys(full.rope)) {
    const { [field as keyof typeof full.rope]: _dropped, ...rope } = full.rope
    t.throws(() => create({ ...full, rope }), { name: 'TypeError', message: new RegExp(`^spec\\.rope\\.${field} must be`) }, `without spec.rope.${field}`)
  }
  const model = await create(full)
  t.equal(model.parameters().length > 0, true, 'the complete spec creates a model')
  model.dispose()
})

t.test('a NativeModel is only made by NativeModel.create; bad devices are refused before any work starts', async (t) => {
  const Ctor = native().NativeModel as unknown as new (...args: unknown[]) => unknown
  t.throws(() => new Ctor(spec(), OPTIONS), { name: 'TypeError', message: /a NativeModel is made by NativeModel\.create\(spec, options\)/ })
  t.throws(() => new Ctor({}), { name: 'TypeError', message: /NativeModel\.create/ })
  t.throws(() => native().NativeModel.create(spec(), { device: 'cuda:x', dtype: 'float32' }), { message: /device must be 'cpu', 'cuda' or 'cuda:<n>', got 'cuda:x'/ })
  t.throws(() => native().NativeModel.create(spec(), { device: 'cpu', dtype: 'float64' }), { name: 'TypeError', message: /dtype must be float32, bfloat16 or float16/ })
})
