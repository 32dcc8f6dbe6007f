/**
 * trainOverrides: the keys code puts on top of a YAML, typed from the key table (the @ts-expect-error lines are
 * checked by `npm run typecheck`: each fails the build once the type lets its mistake through).
 */
import t from 'tap'
import { parseTrainConfig } from '../lib/train/config.js'
import { trainOverrides } from '../lib/train/overrides.js'

const required = { model_name_or_path: 'm', dataset: ['a', 'b'], output_dir: 'o' } as const

t.test('later layers win, undefined values are left out, and what the type allows parses', async (t) => {
  const merged = trainOverrides(
    { learning_rate: 1e-3, max_steps: 5, freeze_trainable_modules: ['mlp', 'self_attn'], resume_from_checkpoint: null },
    { max_steps: undefined, learning_rate: 2e-4, eval_strategy: 'steps' },
  )
  t.same(merged, {
    learning_rate: 2e-4,
    max_steps: 5,
    freeze_trainable_modules: ['mlp', 'self_attn'],
    resume_from_checkpoint: null,
    eval_strategy: 'steps',
  })
  const order = ['learning_rate', 'max_steps', 'freeze_trainable_modules', 'resume_from_checkpoint', 'eval_strategy']
  t.same(Object.keys(merged), order, 'in first-given order')
  const config = parseTrainConfig(trainOverrides(required, merged), 'test', '/base')
  t.same(
    [config.learningRate, config.maxSteps, config.freezeTrainableModules, config.evalStrategy, config.dataset],
    [2e-4, 5, 'mlp,self_attn', 'steps', ['a', 'b']],
  )
})

t.test('mistakes are compile errors', async (t) => {
  // @ts-expect-error a misspelt key
  trainOverrides({ learning_rat: 1e-3 })
  // @ts-expect-error a string where a number goes
  trainOverrides({ learning_rate: '1e-3' })
  // @ts-expect-error a value outside the key's choices
  trainOverrides({ finetuning_type: 'qlora' })
  // @ts-expect-error null where null is not the key's default
  trainOverrides({ max_steps: null })
  t.throws(() => parseTrainConfig(trainOverrides(required, { learning_rate: -1 }), 'test', '/'), {
    code: 'LLAMAPRO_TRAIN_CONFIG',
    message: /learning_rate must be a number >= 0, got -1/,
  })
})
