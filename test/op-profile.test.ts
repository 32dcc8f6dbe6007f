// LLAMAPRO_PROFILE_OPS=1 (native/op_profile.h): a training step prints its operators by self thread-CPU time (=wall:
// by wall time), with the step's phases; without the variable it prints nothing. Run in a child process: the table goes
// to stderr.
import t from 'tap'
import { execFile } from 'node:child_process'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { REPO_ROOT } from './helpers/python.js'

const run = promisify(execFile)

const SCRIPT = `
import { LlamaModel } from ${JSON.stringify(join(REPO_ROOT, 'dist', 'index.js'))}
const raw = { architectures: ['LlamaForCausalLM'], model_type: 'llama', vocab_size: 64, hidden_size: 32, intermediate_size: 64,
  num_hidden_layers: 3, num_attention_heads: 4, num_key_value_heads: 2, rms_norm_eps: 1e-6, rope_theta: 10000, max_position_embeddings: 64 }
const model = await LlamaModel.random(raw, { seed: 1, dtype: 'float32', gradientCheckpointing: true })
await model.setTrainable(model.parameters().filter((p) => p.name.startsWith('model.layers.1.')).map((p) => p.name))
model.native.configureOptimizer({ noDecay: [], step: 0, lossScaling: false })
const ids = new Int32Array(2 * 8).map((_, i) => (i * 7) % 64)
await model.native.trainStep(ids, ids, 2, 8, { lossMultiplier: 1, update: true, lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0, maxGradNorm: 1, reportParamNorms: false })
model.dispose()
`

async function step(env: NodeJS.ProcessEnv): Promise<string> {
  const { stderr } = await run(process.execPath, ['--input-type=module', '-e', SCRIPT], {
    env: { ...process.env, ...env },
    cwd: REPO_ROOT,
  })
  return stderr
}

t.test('LLAMAPRO_PROFILE_OPS=1 prints the step operators and phases by thread CPU time', async (t) => {
  const table = await step({ LLAMAPRO_PROFILE_OPS: '1' })
  t.match(table, /llamapro op profile: [\d.]+ ms thread CPU time in operators/, 'a header with the total')
  t.match(
    table,
    /^(aten::(mm|matmul|linear)|llamapro::onednn_sgemm)\s+[\d.]+\s+[\d.]+%\s+[\d.]+\s+\d+$/m,
    'matrix products among the rows, with self ms, share, total ms and calls',
  )
  for (const phase of ['forward_and_loss', 'backward', 'checkpoint_recompute', 'update']) {
    t.match(table, new RegExp(`^llamapro::${phase}\\s+total\\s+[\\d.]+ ms$`, 'm'), `the ${phase} phase`)
  }
  t.equal(await step({ LLAMAPRO_PROFILE_OPS: '0' }), '', 'LLAMAPRO_PROFILE_OPS=0 prints nothing')
  t.equal(await step({ LLAMAPRO_PROFILE_OPS: '' }), '', 'unset (empty) prints nothing')
})

t.test(
  'LLAMAPRO_PROFILE_OPS=wall times the same table by the monotonic clock (where a multi-threaded step spends its ' +
    'wall time)',
  async (t) => {
    const table = await step({ LLAMAPRO_PROFILE_OPS: 'wall' })
    t.match(table, /llamapro op profile: [\d.]+ ms wall time in operators/, 'the header names wall time')
    t.match(table, /^llamapro::backward\s+total\s+[\d.]+ ms$/m, 'with the phases')
  },
)
