import t from 'tap'
import { mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { openCheckpoint } from '../lib/checkpoint/checkpoint.js'
import { parseModelConfig } from '../lib/checkpoint/config.js'
import { LlamaModel } from '../lib/index.js'
import { writeTinyModel, tinyRawConfig } from './helpers/tiny-model.js'

t.test('a single-file and a sharded checkpoint list the same tensors', async (t) => {
  const dir = t.testdir()
  const single = await writeTinyModel(join(dir, 'single'), { seed: 3 })
  await writeTinyModel(join(dir, 'sharded'), { seed: 3, shardSize: 20_000 })
  const a = await openCheckpoint(single.dir)
  const b = await openCheckpoint(join(dir, 'sharded'))
  t.notOk(a.sharded)
  t.ok(b.sharded)
  t.ok(b.files.length > 2, `${b.files.length} shards`)
  t.same(
    b.tensors.map((x) => [x.name, x.shape, x.nbytes]),
    a.tensors.map((x) => [x.name, x.shape, x.nbytes]),
  )
  t.equal(a.dtype, 'float32')
})

t.test('missing config.json', async (t) => {
  const model = await writeTinyModel(join(t.testdir(), 'm'))
  rmSync(join(model.dir, 'config.json'))
  await t.rejects(openCheckpoint(model.dir), {
    code: 'LLAMAPRO_CHECKPOINT',
    message: /m\/config\.json: config\.json not found/,
  })
})

t.test('missing model folder', async (t) => {
  await t.rejects(openCheckpoint('/nonexistent/model'), { message: /model folder \/nonexistent\/model not found/ })
})

t.test('unsupported model_type lists the supported ones', async (t) => {
  const model = await writeTinyModel(join(t.testdir(), 'm'), { config: { model_type: 'gpt2' } }).catch(() => undefined)
  t.equal(model, undefined, 'the fixture writer itself validates the config')
  const dir = join(t.testdir(), 'm2')
  await writeTinyModel(dir)
  const raw = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'))
  writeFileSync(join(dir, 'config.json'), JSON.stringify({ ...raw, model_type: 'gpt2' }))
  await t.rejects(openCheckpoint(dir), {
    code: 'LLAMAPRO_CONFIG',
    message: /model_type "gpt2" is not supported \(supported: llama, mistral, qwen2\)/,
  })
})

t.test('config values are validated with the key named', async (t) => {
  t.throws(() => parseModelConfig({ ...tinyRawConfig(), num_attention_heads: 0 }), {
    message: /key "num_attention_heads" must be a positive integer, got 0/,
  })
  t.throws(() => parseModelConfig({ ...tinyRawConfig(), num_key_value_heads: 3 }), {
    message: /num_attention_heads 4 must be divisible by num_key_value_heads 3/,
  })
  t.throws(() => parseModelConfig({ ...tinyRawConfig(), rope_scaling: { rope_type: 'yarn', factor: 2 } }), {
    message: /rope_type "yarn" is not supported \(supported: default, linear, llama3\)/,
  })
  t.throws(() => parseModelConfig({ ...tinyRawConfig(), rope_scaling: { rope_type: 'llama3', factor: 8 } }), {
    message: /rope_scaling.low_freq_factor/,
  })
  t.throws(() => parseModelConfig({ ...tinyRawConfig(), layer_types: ['full_attention'] }), {
    message: /layer_types" must list one entry per layer \(4\)/,
  })
  const { vocab_size: _, ...noVocab } = tinyRawConfig()
  t.throws(() => parseModelConfig(noVocab), { message: /missing key "vocab_size"/ })
})

t.test('sizes beyond any real model are refused before anything is allocated', async (t) => {
  t.throws(() => parseModelConfig({ ...tinyRawConfig(), num_hidden_layers: 1e9 }), {
    code: 'LLAMAPRO_CONFIG',
    message:
      /key "num_hidden_layers" is 1000000000, above the largest llamapro supports \(4096\); is the file corrupt\?/,
  })
  t.throws(() => parseModelConfig({ ...tinyRawConfig(), vocab_size: 2 ** 40 }), {
    message: /key "vocab_size" is 1099511627776, above the largest llamapro supports/,
  })
  t.throws(() => parseModelConfig({ ...tinyRawConfig(), hidden_act: 'gelu' }), {
    message: /hidden_act "gelu" is not supported \(LLaMA, Mistral and Qwen2 use "silu"\)/,
  })
  t.throws(() => parseModelConfig({ ...tinyRawConfig(), partial_rotary_factor: 0.5 }), {
    message: /partial_rotary_factor 0\.5 is not supported \(only 1\.0\)/,
  })
  t.equal(
    parseModelConfig({ ...tinyRawConfig(), num_hidden_layers: 4096, layer_types: undefined }).numLayers,
    4096,
    'the limit itself is accepted',
  )
})

t.test('config forms: head_dim, rope_parameters, llama3 scaling, sliding windows, qwen2 biases', async (t) => {
  const mistral = parseModelConfig({ ...tinyRawConfig({ modelType: 'mistral' }), head_dim: 16, sliding_window: 3 })
  t.equal(mistral.headDim, 16)
  t.same(mistral.slidingWindows, [3, 3, 3, 3])
  const qwen = parseModelConfig({
    ...tinyRawConfig({ modelType: 'qwen2' }),
    use_sliding_window: true,
    sliding_window: 5,
    max_window_layers: 2,
  })
  t.same(qwen.slidingWindows, [null, null, 5, 5])
  t.ok(qwen.qkvBias)
  t.notOk(qwen.oBias)
  const v5 = parseModelConfig({
    ...tinyRawConfig(),
    rope_theta: undefined,
    rope_parameters: {
      rope_type: 'llama3',
      rope_theta: 500000,
      factor: 8,
      low_freq_factor: 1,
      high_freq_factor: 4,
      original_max_position_embeddings: 64,
    },
  })
  t.equal(v5.rope.type, 'llama3')
  t.equal(v5.rope.theta, 500000)
  const typed = parseModelConfig({
    ...tinyRawConfig(),
    layer_types: ['full_attention', 'sliding_attention', 'full_attention', 'sliding_attention'],
    sliding_window: 7,
  })
  t.same(typed.slidingWindows, [null, 7, null, 7])
  const qwenOff = parseModelConfig({
    ...tinyRawConfig({ modelType: 'qwen2' }),
    layer_types: ['full_attention', 'sliding_attention', 'full_attention', 'sliding_attention'],
    sliding_window: 7,
  })
  t.same(qwenOff.slidingWindows, [null, null, null, null], 'qwen2 without use_sliding_window uses no window')
  t.same(
    parseModelConfig(tinyRawConfig({ modelType: 'mistral' })).slidingWindows,
    [4096, 4096, 4096, 4096],
    "mistral's default window",
  )
  t.same(parseModelConfig({ ...tinyRawConfig({ modelType: 'mistral' }), sliding_window: null }).slidingWindows, [
    null,
    null,
    null,
    null,
  ])
})

t.test('missing tensor', async (t) => {
  const dir = join(t.testdir(), 'm')
  await writeTinyModel(dir)
  const raw = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'))
  writeFileSync(join(dir, 'config.json'), JSON.stringify({ ...raw, num_hidden_layers: 5 }))
  await t.rejects(openCheckpoint(dir), {
    message:
      /tensor "model\.layers\.4\.self_attn\.q_proj\.weight" is missing \(config\.json implies shape \[32, 32\]\)/,
  })
})

t.test('misshaped tensor', async (t) => {
  const dir = join(t.testdir(), 'm')
  await writeTinyModel(dir)
  const raw = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'))
  writeFileSync(join(dir, 'config.json'), JSON.stringify({ ...raw, intermediate_size: 48 }))
  await t.rejects(openCheckpoint(dir), {
    message:
      /model\.safetensors: tensor "model\.layers\.0\.mlp\.gate_proj\.weight" has shape \[64, 32\] but config\.json implies \[48, 32\]/,
  })
})

t.test('unexpected tensor', async (t) => {
  const dir = join(t.testdir(), 'm')
  await writeTinyModel(dir, { attentionBias: true })
  const raw = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'))
  writeFileSync(join(dir, 'config.json'), JSON.stringify({ ...raw, attention_bias: false }))
  await t.rejects(openCheckpoint(dir), {
    message: /unexpected tensor "model\.layers\.0\.self_attn\.[kqvo]_proj\.bias"/,
  })
})

t.test('index pointing at a missing shard', async (t) => {
  const dir = join(t.testdir(), 'm')
  await writeTinyModel(dir, { shardSize: 60_000 })
  const index = JSON.parse(readFileSync(join(dir, 'model.safetensors.index.json'), 'utf8'))
  t.same(new Set(Object.values(index.weight_map)).size, 4, 'the fixture has 4 shards')
  rmSync(join(dir, 'model-00002-of-00004.safetensors'))
  await t.rejects(openCheckpoint(dir), {
    message: /shard model-00002-of-00004\.safetensors \(holding ".*"\) does not exist/,
  })
})

t.test('index pointing outside the model folder', async (t) => {
  const dir = join(t.testdir(), 'm')
  await writeTinyModel(dir, { shardSize: 20_000 })
  const indexPath = join(dir, 'model.safetensors.index.json')
  const index = JSON.parse(readFileSync(indexPath, 'utf8'))
  index.weight_map['model.norm.weight'] = '../elsewhere/model.safetensors'
  writeFileSync(indexPath, JSON.stringify(index))
  await t.rejects(openCheckpoint(dir), {
    message:
      /weight_map\["model\.norm\.weight"\] points outside the model folder \(\.\.\/elsewhere\/model\.safetensors\)/,
  })
})

t.test('index listing a tensor in the wrong shard', async (t) => {
  const dir = join(t.testdir(), 'm')
  await writeTinyModel(dir, { shardSize: 60_000 })
  const indexPath = join(dir, 'model.safetensors.index.json')
  const index = JSON.parse(readFileSync(indexPath, 'utf8'))
  index.weight_map['model.norm.weight'] = 'model-00001-of-00004.safetensors'
  writeFileSync(indexPath, JSON.stringify(index))
  await t.rejects(openCheckpoint(dir), {
    message: /tensor "model\.norm\.weight" is listed in model-00001-of-00004\.safetensors but/,
  })
})

t.test('pytorch_model.bin checkpoints get a conversion hint', async (t) => {
  const dir = join(t.testdir(), 'm')
  await writeTinyModel(dir)
  renameSync(join(dir, 'model.safetensors'), join(dir, 'pytorch_model.bin'))
  await t.rejects(openCheckpoint(dir), { message: /reads safetensors only.*safe_serialization=True/ })
})

t.test('a truncated weights file fails in TypeScript, before native code reads it', async (t) => {
  const dir = join(t.testdir(), 'm')
  await writeTinyModel(dir)
  const bytes = readFileSync(join(dir, 'model.safetensors'))
  writeFileSync(join(dir, 'model.safetensors'), bytes.subarray(0, bytes.length - 100))
  await t.rejects(LlamaModel.load(dir), {
    code: 'LLAMAPRO_SAFETENSORS',
    message: /data_offsets end at \d+ but the file holds only \d+ data bytes \(truncated file\?\)/,
  })
})

t.test('non-float weights are refused', async (t) => {
  const dir = join(t.testdir(), 'm')
  mkdirSync(dir)
  await writeTinyModel(dir)
  const bytes = readFileSync(join(dir, 'model.safetensors'))
  const n = Number(bytes.readBigUInt64LE(0))
  const header = bytes
    .subarray(8, 8 + n)
    .toString()
    .replace('"model.norm.weight":{"dtype":"F32"', '"model.norm.weight":{"dtype":"I32"')
  writeFileSync(
    join(dir, 'model.safetensors'),
    Buffer.concat([bytes.subarray(0, 8), Buffer.from(header), bytes.subarray(8 + n)]),
  )
  await t.rejects(openCheckpoint(dir), {
    message: /tensor "model\.norm\.weight" is I32; model weights must be F32, BF16 or F16/,
  })
})
