import t, { type Test } from 'tap'
import { execFile } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { expandCheckpoint } from '../lib/expand/expand-checkpoint.js'
import { planTraining } from '../lib/policy/plan.js'
import { writeTinyModel } from './helpers/tiny-model.js'
import { REPO_ROOT } from './helpers/python.js'

const CLI = join(REPO_ROOT, 'dist', 'cli', 'main.js')
const run = promisify(execFile)

async function expanded(t: Test) {
  const dir = t.testdir()
  const base = await writeTinyModel(join(dir, 'base'), { layers: 8 })
  await expandCheckpoint(base.dir, join(dir, 'pro'), { numExpand: 4 })
  return { dir, base: base.dir, pro: join(dir, 'pro') }
}

t.test('plan --json: a stable shape with layers, expanded blocks, counts and memory', async (t) => {
  const { pro } = await expanded(t)
  const out = JSON.parse(
    (
      await run(process.execPath, [
        CLI,
        'plan',
        pro,
        '--use-llama-pro',
        '--freeze-trainable-layers',
        '4',
        '--batch',
        '2',
        '--seq',
        '32',
        '--json',
      ])
    ).stdout,
  )
  for (const key of [
    'numLayers',
    'trainableLayerIds',
    'trainable',
    'frozen',
    'trainableParams',
    'totalParams',
    'memory',
    'layers',
    'newLayerIds',
    'explanation',
  ])
    t.ok(key in out, key)
  t.equal(out.numLayers, 12)
  t.same(out.trainableLayerIds, [2, 5, 8, 11])
  t.same(out.newLayerIds, [2, 5, 8, 11])
  t.equal(out.newLayersFrom, 'llamapro_expansion.json')
  t.equal(out.trainable.length + out.frozen.length, 12 * 9 + 3)
  for (const key of ['weights', 'gradients', 'optimizer', 'activations', 'peak']) t.type(out.memory[key], 'number')
  t.equal(out.memory.gradients, out.trainableParams * 4)
  t.equal(out.memory.optimizer, out.trainableParams * 8)
  t.same(out.layers[2], {
    index: 2,
    isNew: true,
    trainableModules: ['self_attn', 'mlp', 'input_layernorm', 'post_attention_layernorm'],
  })
})

t.test('plan says in words what use_llama_pro selects, and warns when it is not the expanded blocks', async (t) => {
  const { pro } = await expanded(t)
  const text = (await run(process.execPath, [CLI, 'plan', pro, '--use-llama-pro', '--freeze-trainable-layers', '4']))
    .stdout
  t.match(text, /does not mean "the last 4 layers"/)
  t.match(text, /These are exactly the 4 expanded blocks/)
  t.match(text, /\n\s+2 {2}expanded\s+self_attn, mlp/)
  const wrong = await planTraining({
    modelDir: pro,
    options: { useLlamaPro: true, freezeTrainableLayers: 2 },
    batch: 1,
    seq: 8,
    computeDtype: 'float32',
    masterDtype: 'float32',
  })
  t.same(wrong.trainableLayerIds, [5, 11])
  t.match(wrong.explanation.join('\n'), /Warning: expanded blocks 2, 8 will stay frozen/)
  const last = await planTraining({
    modelDir: pro,
    options: { freezeTrainableLayers: 4 },
    batch: 1,
    seq: 8,
    computeDtype: 'float32',
    masterDtype: 'float32',
  })
  t.match(last.explanation.join('\n'), /Warning: layers 9, 10 are original layers/)
})

t.test('expanded blocks are found from their zero projections when there is no record', async (t) => {
  const { pro } = await expanded(t)
  const { rmSync } = await import('node:fs')
  rmSync(join(pro, 'llamapro_expansion.json'))
  const report = await planTraining({
    modelDir: pro,
    options: { useLlamaPro: true, freezeTrainableLayers: 4 },
    batch: 1,
    seq: 8,
    computeDtype: 'float32',
    masterDtype: 'float32',
  })
  t.equal(report.newLayersFrom, 'zero o_proj/down_proj')
  t.same(report.newLayerIds, [2, 5, 8, 11])
})

t.test('plan reads a train.yaml: strategy, batch, cutoff_len and bf16 come from it; flags override', async (t) => {
  const { dir, pro } = await expanded(t)
  const yaml = join(dir, 'train.yaml')
  writeFileSync(
    yaml,
    `model_name_or_path: pro\nfinetuning_type: freeze\nuse_llama_pro: true\nfreeze_trainable_layers: ` +
      `4\nper_device_train_batch_size: 3\ncutoff_len: 40\nbf16: true\ndataset: x.json\noutput_dir: out\n`,
  )
  // Relative paths in the YAML resolve against the working directory, as in LLaMA-Factory.
  const out = JSON.parse((await run(process.execPath, [CLI, 'plan', yaml, '--json'], { cwd: dir })).stdout)
  t.equal(out.model, pro)
  t.same(out.trainableLayerIds, [2, 5, 8, 11])
  t.equal(out.memory.batch, 3)
  t.equal(out.memory.seq, 40)
  t.equal(out.memory.computeDtype, 'bfloat16')
  t.equal(out.memory.masterDtype, 'float32')
  const overridden = JSON.parse(
    (
      await run(process.execPath, [CLI, 'plan', yaml, '--json', '--freeze-trainable-layers', '2', '--batch', '5'], {
        cwd: dir,
      })
    ).stdout,
  )
  t.same(
    overridden.trainableLayerIds,
    [5, 11],
    'the flag overrides the YAML value; use_llama_pro still comes from the YAML',
  )
  t.equal(overridden.memory.batch, 5)
  const elsewhere = await run(process.execPath, [CLI, 'plan', yaml, '--json']).catch((e) => e)
  t.equal(elsewhere.code, 1, 'from another working directory the relative model path is not found')
  t.match(
    elsewhere.stderr,
    /model_name_or_path "pro" is not in the working directory .* but is beside the YAML file: relative paths resolve against the working directory, as in LLaMA-Factory/,
  )
})

t.test('plan errors name the key and what is valid', async (t) => {
  const { pro } = await expanded(t)
  const bad = await run(process.execPath, [
    CLI,
    'plan',
    pro,
    '--use-llama-pro',
    '--freeze-trainable-layers',
    '5',
  ]).catch((e) => e)
  t.equal(bad.code, 1)
  t.match(bad.stderr, /`num_layers` 12 should be divisible by `num_layer_trainable` 5/)
  const module = await run(process.execPath, [CLI, 'plan', pro, '--freeze-trainable-modules', 'attention']).catch(
    (e) => e,
  )
  t.match(
    module.stderr,
    /Module attention is not found, please choose from self_attn, mlp, input_layernorm, post_attention_layernorm/,
  )
  const usage = await run(process.execPath, [CLI, 'plan', pro, '--freeze-trainable-layers', 'x']).catch((e) => e)
  t.equal(usage.code, 2)
  t.match(usage.stderr, /--freeze-trainable-layers must be an integer/)
})
