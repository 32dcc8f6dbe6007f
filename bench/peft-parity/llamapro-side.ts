/**
 * llamapro's half of bench/peft-parity (run.sh): `prepare WORK` makes a tiny base model, expands it (LLaMA-Pro) and
 * trains a LoRA adapter on the expanded blocks for a few steps (native steps on fixed token ids), saving the
 * adapter and llamapro's logits with it; `apply WORK ADAPTER OUT.json` loads any PEFT adapter and writes the
 * logits; `merge WORK ADAPTER OUT_DIR` runs llamapro's merge.
 */
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { loraPolicy } from '../../lib/adapters/lora-targets.js'
import { mergeAdapter } from '../../lib/adapters/merge-adapter.js'
import { expandCheckpoint } from '../../lib/expand/expand-checkpoint.js'
import { LlamaModel } from '../../lib/index.js'

const [command, work, arg1, arg2] = process.argv.slice(2)
const IDS = Array.from({ length: 2 }, (_, r) =>
  Array.from({ length: 16 }, (_, i) => (i * 7919 + r * 104729 + 13) % 128),
)

async function logits(model: LlamaModel): Promise<number[]> {
  return Array.from((await model.forward(IDS)).logits)
}

if (command === 'prepare') {
  const config = {
    architectures: ['LlamaForCausalLM'],
    model_type: 'llama',
    vocab_size: 128,
    hidden_size: 64,
    intermediate_size: 128,
    num_hidden_layers: 4,
    num_attention_heads: 4,
    num_key_value_heads: 2,
    max_position_embeddings: 256,
    rms_norm_eps: 1e-6,
    rope_theta: 10000,
    tie_word_embeddings: false,
    hidden_act: 'silu',
    torch_dtype: 'float32',
    bos_token_id: 1,
    eos_token_id: 2,
  }
  const base = await LlamaModel.random(config, { seed: 11, std: 0.05 })
  await base.save(join(work, 'base'))
  base.dispose()
  await expandCheckpoint(join(work, 'base'), join(work, 'pro'), { numExpand: 2 })
  const model = await LlamaModel.load(join(work, 'pro'))
  writeFileSync(join(work, 'base-logits.json'), JSON.stringify(await logits(model)))
  const plan = loraPolicy(model.config.numLayers, model.parameters(), {
    useLlamaPro: true,
    freezeTrainableLayers: 2,
    additionalTarget: 'norm',
  })
  await model.addLora({
    targets: plan.targets,
    rank: 4,
    alpha: 8,
    seed: 3,
    targetModules: plan.targetModules,
    modulesToSave: plan.modulesToSave,
    fullyTrained: plan.fullyTrained,
  })
  await model.setTrainable(plan.trainable)
  model.native.configureOptimizer({ noDecay: [], step: 0, lossScaling: false })
  const flat = Int32Array.from(IDS.flat())
  for (let i = 0; i < 4; i++) {
    await model.native.trainStep(flat, flat, 2, 16, {
      lossMultiplier: 1,
      update: true,
      lr: 2e-2,
      beta1: 0.9,
      beta2: 0.999,
      eps: 1e-8,
      weightDecay: 0,
      maxGradNorm: 1,
      reportParamNorms: false,
    })
  }
  await model.saveAdapter(join(work, 'llamapro-adapter'))
  writeFileSync(join(work, 'ids.json'), JSON.stringify(IDS))
  writeFileSync(join(work, 'llamapro-logits.json'), JSON.stringify(await logits(model)))
  model.dispose()
} else if (command === 'apply') {
  const model = await LlamaModel.load(join(work, 'pro'), { adapter: arg1! })
  writeFileSync(arg2!, JSON.stringify(await logits(model)))
  model.dispose()
} else if (command === 'merge') {
  const result = await mergeAdapter(join(work, 'pro'), arg1!, arg2!, { force: true })
  console.log(JSON.stringify(result))
} else {
  console.error(`usage: llamapro-side.ts prepare|apply|merge WORK ...; got ${command}`)
  process.exit(2)
}
