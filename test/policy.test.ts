import t from 'tap'
import { parseModelConfig } from '../lib/checkpoint/config.js'
import { expectedParameters } from '../lib/checkpoint/parameters.js'
import { freezePolicy, type FreezeOptions } from '../lib/policy/freeze-policy.js'
import { tinyRawConfig, type TinyModelOptions } from './helpers/tiny-model.js'
import { runPythonJson } from './helpers/python.js'

const names = (o: TinyModelOptions) => expectedParameters(parseModelConfig(tinyRawConfig(o))).map((p) => p.name)

const MODELS: Record<string, (layers: number) => string[]> = {
  llama: (layers) => names({ layers }),
  'llama tied': (layers) => names({ layers, tie: true }),
  'qwen2 biases': (layers) => names({ layers, modelType: 'qwen2' }),
  'llama attention+mlp bias': (layers) => names({ layers, attentionBias: true, mlpBias: true }),
}

interface Case {
  model: string
  numLayers: number
  options: FreezeOptions
}

// Everything LLaMA-Factory accepts or rejects, minus the two documented differences (tested below on their own).
function cases(): Case[] {
  const out: Case[] = []
  const moduleLists = [
    'all',
    'mlp',
    'self_attn',
    'mlp,self_attn',
    'input_layernorm',
    'post_attention_layernorm, mlp',
    'attention',
    'mlp,',
  ]
  const extras: (string | null)[] = [
    null,
    'embed_tokens',
    'lm_head',
    'embed_tokens,lm_head',
    'head',
    'embed_tokens, lm_head',
  ]
  for (const model of Object.keys(MODELS)) {
    for (const numLayers of [1, 2, 4, 6, 8, 12]) {
      for (const n of [-13, -4, -1, 0, 1, 2, 3, 4, 5, 6, 12, 24]) {
        for (const useLlamaPro of [false, true]) {
          if (useLlamaPro && n <= 0) continue // documented difference: an error here, LLaMA-Factory's odd results
          for (const modules of moduleLists) {
            out.push({
              model,
              numLayers,
              options: {
                finetuningType: 'freeze',
                freezeTrainableLayers: n,
                freezeTrainableModules: modules,
                useLlamaPro,
              },
            })
          }
          for (const extra of extras) {
            out.push({
              model,
              numLayers,
              options: { finetuningType: 'freeze', freezeTrainableLayers: n, freezeExtraModules: extra, useLlamaPro },
            })
          }
        }
      }
      out.push({ model, numLayers, options: { finetuningType: 'full' } })
      out.push({ model, numLayers, options: { finetuningType: 'full', useLlamaPro: true } })
    }
  }
  return out
}

type LfResult =
  | { ok: true; trainable_layer_ids: number[] | null; trainable: string[]; frozen: string[] }
  | { ok: false; error: string; error_type: string }

t.test('the policy agrees with an independent transcription of LLaMA-Factory on every case it handles', async (t) => {
  const all = cases()
  const request = {
    cases: all.map((c) => ({
      num_layers: c.numLayers,
      param_names: MODELS[c.model]!(c.numLayers),
      finetuning_type: c.options.finetuningType,
      freeze_trainable_layers: c.options.freezeTrainableLayers ?? 2,
      freeze_trainable_modules: c.options.freezeTrainableModules ?? 'all',
      freeze_extra_modules: c.options.freezeExtraModules ?? null,
      use_llama_pro: c.options.useLlamaPro ?? false,
    })),
  }
  const { results } = await runPythonJson<{ results: LfResult[] }>(
    ['test/reference/llamafactory_freeze.py'],
    JSON.stringify(request),
  )
  t.equal(results.length, all.length)
  let agreed = 0
  let errors = 0
  all.forEach((c, i) => {
    const lf = results[i]!
    const label = `${c.model}, ${c.numLayers} layers, ${JSON.stringify(c.options)}`
    let ours: ReturnType<typeof freezePolicy> | Error
    try {
      ours = freezePolicy(c.numLayers, request.cases[i]!.param_names, c.options)
    } catch (error) {
      ours = error as Error
    }
    if (!lf.ok) {
      errors++
      if (!(ours instanceof Error)) return t.fail(`${label}: LLaMA-Factory raises "${lf.error}", llamapro accepts`)
      // The same failure, in LLaMA-Factory's own words where it has them.
      const keyPhrase = /divisible/.test(lf.error)
        ? 'should be divisible by'
        : /is not found/.test(lf.error)
          ? `Module ${lf.error.split(' ')[1]} is not found`
          : /only valid/.test(lf.error)
            ? 'only valid for Freeze'
            : ''
      if (keyPhrase && !ours.message.includes(keyPhrase))
        t.fail(`${label}: message "${ours.message}" lacks "${keyPhrase}"`)
      agreed++
      return
    }
    if (ours instanceof Error) return t.fail(`${label}: LLaMA-Factory accepts, llamapro raises "${ours.message}"`)
    if (lf.trainable_layer_ids && JSON.stringify(lf.trainable_layer_ids) !== JSON.stringify(ours.trainableLayerIds)) {
      return t.fail(`${label}: layers ${ours.trainableLayerIds} != LLaMA-Factory ${lf.trainable_layer_ids}`)
    }
    if (JSON.stringify(lf.trainable) !== JSON.stringify(ours.trainable))
      return t.fail(`${label}: trainable sets differ`)
    if (JSON.stringify(lf.frozen) !== JSON.stringify(ours.frozen)) return t.fail(`${label}: frozen sets differ`)
    agreed++
  })
  t.equal(agreed, all.length, `${agreed} of ${all.length} cases agree (${errors} of them errors)`)
  t.ok(errors > 50 && all.length - errors > 1000, 'the table covers both accepted and rejected combinations')
})

t.test('documented difference: `norm` in freeze_extra_modules is the final norm only', async (t) => {
  const params = MODELS.llama!(4)
  const ours = freezePolicy(4, params, { freezeTrainableLayers: 1, freezeExtraModules: 'norm' })
  const { results } = await runPythonJson<{ results: LfResult[] }>(
    ['test/reference/llamafactory_freeze.py'],
    JSON.stringify({
      cases: [
        {
          num_layers: 4,
          param_names: params,
          finetuning_type: 'freeze',
          freeze_trainable_layers: 1,
          freeze_extra_modules: 'norm',
        },
      ],
    }),
  )
  const lf = results[0]!
  t.ok(lf.ok)
  const lfTrainable = lf.ok ? lf.trainable : []
  t.ok(
    lfTrainable.includes('model.layers.0.input_layernorm.weight'),
    "LLaMA-Factory's substring match unfreezes layer 0's layernorm",
  )
  t.notOk(ours.trainable.includes('model.layers.0.input_layernorm.weight'), 'llamapro does not')
  t.ok(ours.trainable.includes('model.norm.weight'))
  t.same(
    ours.trainable.filter((n) => !n.startsWith('model.layers.3.')),
    ['model.norm.weight'],
  )
  t.same(
    lfTrainable.filter((n) => !ours.trainable.includes(n)),
    [
      'model.layers.0.input_layernorm.weight',
      'model.layers.0.post_attention_layernorm.weight',
      'model.layers.1.input_layernorm.weight',
      'model.layers.1.post_attention_layernorm.weight',
      'model.layers.2.input_layernorm.weight',
      'model.layers.2.post_attention_layernorm.weight',
    ],
  )
})

t.test(
  'documented difference: use_llama_pro with freeze_trainable_layers <= 0 is an error, not an empty or odd selection',
  async (t) => {
    const params = MODELS.llama!(8)
    t.throws(() => freezePolicy(8, params, { useLlamaPro: true, freezeTrainableLayers: 0 }), {
      code: 'LLAMAPRO_POLICY',
      message: /freeze_trainable_layers is 0 with use_llama_pro: it must be the number of expanded blocks/,
    })
    t.throws(() => freezePolicy(8, params, { useLlamaPro: true, freezeTrainableLayers: -2 }), {
      message: /freeze_trainable_layers is -2 with use_llama_pro/,
    })
  },
)

t.test('use_llama_pro counts expanded blocks and says so', async (t) => {
  const plan = freezePolicy(40, names({ layers: 40 }), { useLlamaPro: true, freezeTrainableLayers: 8 })
  t.same(plan.trainableLayerIds, [4, 9, 14, 19, 24, 29, 34, 39])
  t.match(plan.explanation.join(' '), /does not mean "the last 8 layers"/)
  t.match(
    plan.explanation.join(' '),
    /stride = 40 \/ 8 = 5: every 5th layer trains, ending with the last: layers 4, 9, 14, 19, 24, 29, 34, 39\./,
  )
})

t.test('explicit layer ids, beyond LLaMA-Factory', async (t) => {
  const params = names({ layers: 24 })
  const plan = freezePolicy(24, params, { freezeTrainableLayerIds: '10,16,17,23', freezeTrainableModules: 'mlp' })
  t.same(plan.trainableLayerIds, [10, 16, 17, 23])
  t.equal(plan.trainable.length, 4 * 3)
  t.ok(plan.trainable.every((n) => /layers\.(10|16|17|23)\.mlp\./.test(n)))
  t.same(freezePolicy(24, params, { freezeTrainableLayerIds: [23, 1] }).trainableLayerIds, [1, 23])
  t.throws(() => freezePolicy(24, params, { freezeTrainableLayerIds: '3,24' }), {
    message: /layer 24 is out of range; the model has 24 layers \(0\.\.23\)/,
  })
  t.throws(() => freezePolicy(24, params, { freezeTrainableLayerIds: '3,3' }), { message: /layer 3 is listed twice/ })
  t.throws(() => freezePolicy(24, params, { freezeTrainableLayerIds: 'x' }), { message: /"x" is not a layer index/ })
  t.throws(() => freezePolicy(24, params, { freezeTrainableLayerIds: '3', useLlamaPro: true }), {
    message: /either freeze_trainable_layer_ids or use_llama_pro/,
  })
})

t.test('lm_head on a tied model says it is embed_tokens; lora is not a freeze strategy', async (t) => {
  t.throws(() => freezePolicy(4, names({ layers: 4, tie: true }), { freezeExtraModules: 'lm_head' }), {
    message: /so lm_head is embed_tokens\. Use freeze_extra_modules: embed_tokens/,
  })
  t.throws(() => freezePolicy(4, names({ layers: 4 }), { finetuningType: 'lora' }), {
    message: /finetuning_type "lora" is not a freeze strategy: .*loraPolicy/,
  })
})
