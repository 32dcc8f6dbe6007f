/**
 * One training step of a tiny 3-layer llama in a child process, with LLAMAPRO_PROFILE_OPS=1 and the given
 * environment (switches the native code reads per call: LLAMAPRO_ROW_PLAN, LLAMAPRO_FUSED_ATTENTION, ...), returning
 * the operator table it printed. Tests use it to prove which path a step really took. The batch is 2 x 12 with the
 * first 3 positions of each row and the last 6 of the second unlabelled, so the row plan packs its rows.
 */
import { execFile } from 'node:child_process'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { REPO_ROOT } from './python.js'

const SCRIPT = `
import { LlamaModel } from ${JSON.stringify(join(REPO_ROOT, 'dist', 'index.js'))}
const raw = { architectures: ['LlamaForCausalLM'], model_type: 'llama', vocab_size: 64, hidden_size: 32, intermediate_size: 64,
  num_hidden_layers: 3, num_attention_heads: 4, num_key_value_heads: 2, rms_norm_eps: 1e-6, rope_theta: 10000, max_position_embeddings: 64 }
const model = await LlamaModel.random(raw, { seed: 1 })
await model.setTrainable(model.parameters().filter((p) => p.name.startsWith('model.layers.2.')).map((p) => p.name))
model.native.configureOptimizer({ noDecay: [], step: 0, lossScaling: false })
const ids = new Int32Array(2 * 12).map((_, i) => 1 + (i * 7) % 63)
const labels = ids.map((v, i) => (i % 12 < 3 || i >= 12 + 6 ? -100 : v))
await model.native.trainStep(ids, labels, 2, 12, { lossMultiplier: 1, update: false, lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0, maxGradNorm: 0, reportParamNorms: false })
model.dispose()
`

export async function profiledStep(env: Record<string, string>): Promise<string> {
  const { stderr } = await promisify(execFile)(process.execPath, ['--input-type=module', '-e', SCRIPT], {
    env: { ...process.env, LLAMAPRO_PROFILE_OPS: '1', ...env },
    cwd: REPO_ROOT,
  })
  return stderr
}
