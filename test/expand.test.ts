import t from 'tap'
import { existsSync, readdirSync, readFileSync, writeFileSync, mkdirSync } from 'node:fs'
import { join } from 'node:path'
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { expandCheckpoint, expandedTensors } from '../lib/expand/expand-checkpoint.js'
import { expandedRawConfig } from '../lib/expand/expanded-config.js'
import { planExpansion } from '../lib/expand/plan.js'
import { verifyExpansion } from '../lib/expand/verify.js'
import { openCheckpoint, type Checkpoint } from '../lib/checkpoint/checkpoint.js'
import { readSafetensorsHeader } from '../lib/checkpoint/safetensors.js'
import { LlamaModel } from '../lib/index.js'
import { writeTinyModel, type TinyModelOptions } from './helpers/tiny-model.js'
import { REPO_ROOT, pythonSnippet, runPythonJson } from './helpers/python.js'

const CLI = join(REPO_ROOT, 'dist', 'cli', 'main.js')
const run = promisify(execFile)

type PythonCheck = { ok: boolean; mismatches: string[]; tensors: number; files_read: string[]; index_ok: boolean }
const pythonCheck = (request: object) =>
  runPythonJson<PythonCheck>(['test/reference/llama_pro_expand.py'], JSON.stringify(request))

t.test('plans follow llama_pro.py: 32 layers, K = 8 puts new blocks at 4, 9, ..., 39', async (t) => {
  const plan = planExpansion(32, { numExpand: 8 })
  t.same(plan.newLayerIds, [4, 9, 14, 19, 24, 29, 34, 39])
  t.same(plan.insertAfter, [3, 7, 11, 15, 19, 23, 27, 31])
  t.equal(plan.numLayers, 40)
  t.same(planExpansion(4, { numExpand: 4 }).newLayerIds, [1, 3, 5, 7])
  t.same(planExpansion(6, { positions: [5, 0] }).newLayerIds, [1, 7])
  t.throws(() => planExpansion(32, { numExpand: 5 }), {
    code: 'LLAMAPRO_EXPAND',
    message: /num_layers 32 should be divisible by num_expand 5/,
  })
  t.throws(() => planExpansion(4, { numExpand: 0 }), { message: /positive integer/ })
  t.throws(() => planExpansion(4, { positions: [4] }), {
    message: /position 4 is out of range: the model has 4 layers \(valid positions: 0\.\.3\)/,
  })
  t.throws(() => planExpansion(4, { positions: [1, 1] }), { message: /position 1 is given twice/ })
  t.throws(() => planExpansion(4, { positions: [-1] }), { message: /position -1 is out of range/ })
  t.throws(() => planExpansion(4, { numExpand: 2, positions: [1] }), { message: /either/ })
})

const cases: [string, TinyModelOptions, { numExpand?: number; positions?: number[] }][] = [
  ['LLaMA with GQA', { kvHeads: 2, layers: 4 }, { numExpand: 2 }],
  ['Qwen2 with q/k/v biases', { modelType: 'qwen2', layers: 4 }, { numExpand: 4 }],
  ['tied embeddings', { tie: true, layers: 4 }, { numExpand: 1 }],
  ['sharded input', { layers: 6, shardSize: 60_000 }, { numExpand: 3 }],
  ['BF16', { dtype: 'BF16', layers: 4, kvHeads: 1 }, { positions: [0, 2] }],
  ['LLaMA with attention and MLP biases', { attentionBias: true, mlpBias: true, layers: 2 }, { numExpand: 2 }],
]

for (const [label, modelOptions, expansion] of cases) {
  t.test(`expand ${label}: every tensor matches an independent expansion, and verify passes`, async (t) => {
    const dir = t.testdir()
    const base = await writeTinyModel(join(dir, 'base'), { seed: 11, ...modelOptions })
    const out = join(dir, 'out')
    const result = await expandCheckpoint(base.dir, out, { ...expansion, shardSize: '100KB' })
    t.equal(result.numLayers, base.config.numLayers + result.newLayerIds.length)
    const check = await pythonCheck({
      original: base.dir,
      expanded: out,
      ...(expansion.positions ? { positions: expansion.positions } : { num_expand: expansion.numExpand }),
    })
    t.same(check.mismatches, [])
    t.ok(
      check.index_ok || check.files_read.length === 1,
      'index agrees with the shards (weight_map, total_size, {"format": "pt"})',
    )
    t.ok(check.ok)
    t.equal(check.files_read.length, result.files.length, 'the safetensors package read every output shard')
    if (modelOptions.tie)
      t.notOk(readFileSync(join(out, check.files_read[0]!)).includes('lm_head'), 'a tied lm_head is not written')
    const config = JSON.parse(readFileSync(join(out, 'config.json'), 'utf8'))
    t.equal(config.num_hidden_layers, result.numLayers)
    const verified = await verifyExpansion(base.dir, out)
    t.ok(verified.ok, verified.failures.join('; '))
    t.equal(verified.maxLogitDifference, 0, 'identity blocks: logits are exactly equal')
    t.same(
      verified.newLayers.map((l) => l.index),
      result.newLayerIds,
    )
  })
}

t.test(
  'the expanded folder is complete: tokenizer and generation files copied, per-layer config lists updated',
  async (t) => {
    const dir = t.testdir()
    const base = await writeTinyModel(join(dir, 'base'), {
      modelType: 'qwen2',
      layers: 4,
      config: {
        use_sliding_window: true,
        sliding_window: 3,
        max_window_layers: 2,
        layer_types: ['full_attention', 'full_attention', 'sliding_attention', 'sliding_attention'],
      },
    })
    writeFileSync(join(base.dir, 'generation_config.json'), '{"do_sample": false}\n')
    writeFileSync(join(base.dir, 'tokenizer.json'), '{"version": "1.0"}\n')
    writeFileSync(join(base.dir, 'tokenizer_config.json'), '{}\n')
    const out = join(dir, 'out')
    await expandCheckpoint(base.dir, out, { numExpand: 2 })
    for (const file of ['generation_config.json', 'tokenizer.json', 'tokenizer_config.json', 'llamapro_expansion.json'])
      t.ok(existsSync(join(out, file)), file)
    const config = JSON.parse(readFileSync(join(out, 'config.json'), 'utf8'))
    t.same(config.layer_types, [
      'full_attention',
      'full_attention',
      'full_attention',
      'sliding_attention',
      'sliding_attention',
      'sliding_attention',
    ])
    t.equal(
      config.max_window_layers,
      3,
      'the threshold moves with the layer it named (original layer 2 is now layer 3)',
    )
    t.same(Object.keys(config), Object.keys(config).sort(), 'keys sorted as transformers writes them')
    const record = JSON.parse(readFileSync(join(out, 'llamapro_expansion.json'), 'utf8'))
    t.same(record.new_layer_ids, [2, 5])
    t.same(record.source_layer_of, { 2: 1, 5: 3 })
    const verified = await verifyExpansion(base.dir, out)
    t.ok(verified.ok, verified.failures.join('; '))
  },
)

t.test('expandedRawConfig moves per-layer settings with their layers', async (t) => {
  const raw = {
    num_hidden_layers: 4,
    layer_types: ['a', 'b', 'c', 'd'],
    no_rope_layers: [1, 0, 1, 0],
    max_window_layers: 4,
    other: [1, 2, 3, 4],
  }
  const out = expandedRawConfig(raw, 4, [0, 3])
  t.same(out.layer_types, ['a', 'a', 'b', 'c', 'd', 'd'])
  t.same(out.no_rope_layers, [1, 1, 0, 1, 0, 0])
  t.equal(out.max_window_layers, 6)
  t.same(out.other, [1, 2, 3, 4], 'lists that are not per-layer settings are left alone')
  t.equal(out.num_hidden_layers, 6)
})

t.test('layer indices are read at their position: other numbers in a name are never renamed', async (t) => {
  const location = (name: string, offset: number) => ({
    name,
    file: 'f',
    dtype: 'F32' as const,
    shape: [1],
    offset,
    nbytes: 4,
  })
  const names = [
    'model.embed_tokens.weight',
    'model.layers.0.mlp.experts.0.w1.weight',
    'model.layers.0.mlp.experts.1.down_proj.weight',
    'model.layers.0.self_attn.o_proj.weight',
    'model.layers.1.mlp.experts.1.w1.weight',
    'model.layers.1.mlp.experts.0.down_proj.weight',
    'model.layers.1.self_attn.o_proj.weight',
    'model.norm.weight',
  ]
  const fake = { tensors: names.map(location) } as unknown as Checkpoint
  const out = expandedTensors(fake, planExpansion(2, { numExpand: 2 }))
  t.same(
    out.map((x) => [x.name, 'zero' in x.source]),
    [
      ['model.embed_tokens.weight', false],
      ['model.layers.0.mlp.experts.0.w1.weight', false],
      ['model.layers.0.mlp.experts.1.down_proj.weight', false],
      ['model.layers.0.self_attn.o_proj.weight', false],
      ['model.layers.1.mlp.experts.0.w1.weight', false],
      ['model.layers.1.mlp.experts.1.down_proj.weight', false],
      ['model.layers.1.self_attn.o_proj.weight', true],
      ['model.layers.2.mlp.experts.1.w1.weight', false],
      ['model.layers.2.mlp.experts.0.down_proj.weight', false],
      ['model.layers.2.self_attn.o_proj.weight', false],
      ['model.layers.3.mlp.experts.1.w1.weight', false],
      ['model.layers.3.mlp.experts.0.down_proj.weight', false],
      ['model.layers.3.self_attn.o_proj.weight', true],
      ['model.norm.weight', false],
    ],
  )
})

t.test('insertBlocks in memory gives the same tensors as expansion on disk', async (t) => {
  const dir = t.testdir()
  const base = await writeTinyModel(join(dir, 'base'), { kvHeads: 2, layers: 4, attentionBias: true, seed: 5 })
  await expandCheckpoint(base.dir, join(dir, 'disk'), { positions: [1, 3] })
  const model = await LlamaModel.load(base.dir)
  t.same(await model.insertBlocks([3, 1]), [2, 5])
  await model.save(join(dir, 'memory'))
  model.dispose()
  const [a, b] = await Promise.all([openCheckpoint(join(dir, 'disk')), openCheckpoint(join(dir, 'memory'))])
  t.same(
    b.tensors.map((x) => x.name),
    a.tensors.map((x) => x.name),
  )
  for (let i = 0; i < a.tensors.length; i++) {
    const x = a.tensors[i]!
    const y = b.tensors[i]!
    const bytesA = readFileSync(x.file).subarray(x.offset, x.offset + x.nbytes)
    const bytesB = readFileSync(y.file).subarray(y.offset, y.offset + y.nbytes)
    if (!bytesA.equals(bytesB)) t.fail(`${x.name} differs`)
  }
  t.same(JSON.parse(readFileSync(join(dir, 'memory', 'llamapro_expansion.json'), 'utf8')).new_layer_ids, [2, 5])
  t.equal(JSON.parse(readFileSync(join(dir, 'memory', 'config.json'), 'utf8')).num_hidden_layers, 6)
})

t.test(
  'verify without an expansion record finds new blocks by their zero projections, and fails a broken expansion',
  async (t) => {
    const dir = t.testdir()
    const base = await writeTinyModel(join(dir, 'base'), { layers: 4 })
    const out = join(dir, 'out')
    await expandCheckpoint(base.dir, out, { numExpand: 2 })
    const { rmSync } = await import('node:fs')
    rmSync(join(out, 'llamapro_expansion.json'))
    const ok = await verifyExpansion(base.dir, out)
    t.equal(ok.mappingFrom, 'zero o_proj/down_proj')
    t.ok(ok.ok)
    // Corrupt one value of a copied tensor in the expanded file: verify must fail and say where.
    const ckpt = await openCheckpoint(out)
    const target = ckpt.tensors.find((x) => x.name === 'model.layers.2.self_attn.q_proj.weight')!
    const bytes = readFileSync(target.file)
    bytes.writeFloatLE(123.0, target.offset)
    writeFileSync(target.file, bytes)
    const bad = await verifyExpansion(base.dir, out)
    t.notOk(bad.ok)
    t.match(bad.failures.join('\n'), /layer 2 self_attn\.q_proj\.weight differs from layer 1/)
  },
)

t.test('errors leave no output folder behind', async (t) => {
  const dir = t.testdir()
  const base = await writeTinyModel(join(dir, 'base'), { layers: 4 })
  const out = join(dir, 'out')
  const noOutput = () => t.same(readdirSync(dir).sort(), ['base'], 'nothing but the input in the folder')
  await t.rejects(expandCheckpoint(base.dir, out, { numExpand: 3 }), {
    message: /num_layers 4 should be divisible by num_expand 3/,
  })
  noOutput()
  await t.rejects(expandCheckpoint(base.dir, out, { positions: [9] }), { message: /position 9 is out of range/ })
  noOutput()
  await t.rejects(expandCheckpoint(join(dir, 'missing'), out, { numExpand: 2 }), {
    message: /model folder .*missing not found/,
  })
  noOutput()
  const malformed = join(dir, 'malformed')
  mkdirSync(malformed)
  writeFileSync(join(malformed, 'config.json'), readFileSync(join(base.dir, 'config.json')))
  writeFileSync(
    join(malformed, 'model.safetensors'),
    readFileSync(join(base.dir, 'model.safetensors')).subarray(0, 1000),
  )
  await t.rejects(expandCheckpoint(malformed, out, { numExpand: 2 }), { code: 'LLAMAPRO_SAFETENSORS' })
  t.notOk(existsSync(out))
  // An aborted expansion removes its temporary folder.
  const controller = new AbortController()
  controller.abort(new Error('stop'))
  await t.rejects(expandCheckpoint(base.dir, out, { numExpand: 2, signal: controller.signal }), { message: /stop/ })
  t.same(readdirSync(dir).sort(), ['base', 'malformed'])
})

t.test('an existing output folder is refused without --force and replaced with it', async (t) => {
  const dir = t.testdir()
  const base = await writeTinyModel(join(dir, 'base'), { layers: 2 })
  const out = join(dir, 'out')
  mkdirSync(out)
  writeFileSync(join(out, 'keep.txt'), 'user data')
  await t.rejects(expandCheckpoint(base.dir, out, { numExpand: 1 }), {
    code: 'LLAMAPRO_OUTPUT_EXISTS',
    message: /already exists and is not empty; pass --force/,
  })
  t.equal(readFileSync(join(out, 'keep.txt'), 'utf8'), 'user data')
  await expandCheckpoint(base.dir, out, { numExpand: 1, force: true })
  t.notOk(existsSync(join(out, 'keep.txt')))
  t.ok(existsSync(join(out, 'model.safetensors')))
})

t.test('CLI: expand prints the fine-tune hint; --json a summary; errors exit 1 or 2', async (t) => {
  const dir = t.testdir()
  const base = await writeTinyModel(join(dir, 'base'), { layers: 4 })
  const text = (await run(process.execPath, [CLI, 'expand', base.dir, join(dir, 'a'), '--num-expand', '2'])).stdout
  t.match(text, /finetuning_type: freeze\n\s+freeze_trainable_layers: 2\n\s+use_llama_pro: true/)
  const json = JSON.parse(
    (await run(process.execPath, [CLI, 'expand', base.dir, join(dir, 'b'), '--positions', '0,1', '--json'])).stdout,
  )
  t.same(json.newLayerIds, [1, 3])
  t.same(json.sourceLayerOf, { 1: 0, 3: 1 })
  t.match(
    json.hint,
    /freeze_trainable_layer_ids: 1,3/,
    'uneven positions: the hint lists the ids (the stride rule would pick others)',
  )
  t.ok(json.bytesWritten > 0)
  t.type(json.seconds, 'number')
  const verify = JSON.parse((await run(process.execPath, [CLI, 'verify', base.dir, join(dir, 'b'), '--json'])).stdout)
  t.ok(verify.ok)
  const fail = await run(process.execPath, [CLI, 'expand', base.dir, join(dir, 'c'), '--num-expand', '3']).catch(
    (e) => e,
  )
  t.equal(fail.code, 1)
  t.match(fail.stderr, /divisible/)
  const usage = await run(process.execPath, [CLI, 'expand', base.dir]).catch((e) => e)
  t.equal(usage.code, 2)
  t.match(usage.stderr, /expected <model_dir> <output_dir>/)
  t.notOk(existsSync(join(dir, 'c')))
})

t.test('safetensors files written by expansion are strict-valid and 8-byte aligned', async (t) => {
  const dir = t.testdir()
  const base = await writeTinyModel(join(dir, 'base'), { layers: 2, dtype: 'BF16' })
  const result = await expandCheckpoint(base.dir, join(dir, 'out'), { numExpand: 2 })
  const header = await readSafetensorsHeader(join(dir, 'out', result.files[0]!))
  t.equal(header.dataStart % 8, 0)
  t.same(header.metadata, { format: 'pt' })
  const sizes = header.tensors.map((x) => x.end - x.begin)
  t.equal(
    sizes.reduce((a, b) => a + b, 0),
    header.fileSize - header.dataStart,
  )
  const pyKeys = await pythonSnippet<string[]>(
    'import json,sys\nfrom safetensors import safe_open\nreq=json.load(sys.stdin)\nwith safe_open(req["f"], ' +
      'framework="pt") as h: print(json.dumps(sorted(h.keys())))',
    { f: join(dir, 'out', result.files[0]!) },
  )
  t.same(pyKeys, header.tensors.map((x) => x.name).sort())
})
