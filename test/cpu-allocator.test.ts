// llamapro's CPU allocator (native/memory_stats.cc) keeps freed blocks of 64 KiB and more for reuse. Without it, a
// training step on the libuv worker thread ran on fresh pages: glibc's per-thread arena handed freed memory back to
// the kernel, and every activation was page-faulted and zeroed again. Each case runs in a child process, set by
// LLAMAPRO_CPU_CACHE in its environment (the page faults are the process's own counter); the kernel option cpuCache
// turns it off in a running process, releasing what it holds.
import t from 'tap'
import { execFile } from 'node:child_process'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { REPO_ROOT } from './helpers/python.js'

const SCRIPT = `
import { LlamaModel } from ${JSON.stringify(join(REPO_ROOT, 'dist', 'index.js'))}
import { native } from ${JSON.stringify(join(REPO_ROOT, 'dist', 'native', 'load.js'))}
import { setKernelOptions } from ${JSON.stringify(join(REPO_ROOT, 'dist', 'index.js'))}
const raw = { architectures: ['LlamaForCausalLM'], model_type: 'llama', vocab_size: 512, hidden_size: 256, intermediate_size: 688,
  num_hidden_layers: 4, num_attention_heads: 4, num_key_value_heads: 2, rms_norm_eps: 1e-6, rope_theta: 10000, max_position_embeddings: 256 }
const model = await LlamaModel.random(raw, { seed: 1 })
await model.setTrainable(model.parameters().filter((p) => p.name.startsWith('model.layers.3.')).map((p) => p.name))
model.native.configureOptimizer({ noDecay: [], step: 0, lossScaling: false })
const [B, T] = [4, 96]
const ids = new Int32Array(B * T).map((_, i) => 1 + (i * 7) % 511)
const step = () => model.native.trainStep(ids, ids, B, T, { lossMultiplier: 1, update: true, lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0, maxGradNorm: 1, reportParamNorms: false })
await step()
await step()
const before = process.resourceUsage().minorPageFault
for (let i = 0; i < 3; i++) await step()
const faults = (process.resourceUsage().minorPageFault - before) / 3
const cached = native().memoryStats().cpu.cached
setKernelOptions({ cpuCache: false })
const switchedOff = native().memoryStats().cpu.cached
await step()
const afterStepOff = native().memoryStats().cpu.cached
model.dispose()
console.log(JSON.stringify({ faults, cached, afterDispose: native().memoryStats().cpu.cached, switchedOff, afterStepOff }))
`

async function measure(
  cache?: string,
): Promise<{ faults: number; cached: number; afterDispose: number; switchedOff: number; afterStepOff: number }> {
  const env = { ...process.env }
  if (cache === undefined) delete env.LLAMAPRO_CPU_CACHE
  else env.LLAMAPRO_CPU_CACHE = cache
  const { stdout } = await promisify(execFile)(process.execPath, ['--input-type=module', '-e', SCRIPT], {
    env,
    cwd: REPO_ROOT,
  })
  return JSON.parse(stdout.trim().split('\n').pop()!)
}

t.test('freed blocks are reused: a training step stops faulting in fresh pages; dispose releases them', async (t) => {
  const cached = await measure()
  const uncached = await measure('0')
  t.ok(cached.cached > 0, `between steps the cache holds freed blocks (${(cached.cached / 2 ** 20).toFixed(1)} MiB)`)
  t.equal(cached.afterDispose, 0, 'disposing the model releases them')
  t.equal(uncached.cached, 0, 'LLAMAPRO_CPU_CACHE=0 keeps nothing')
  t.ok(uncached.faults > 500, `without the cache a step faults in fresh pages (${uncached.faults.toFixed(0)} per step)`)
  t.ok(
    cached.faults < uncached.faults / 4,
    `with it, far fewer (${cached.faults.toFixed(0)} against ${uncached.faults.toFixed(0)} per step)`,
  )
  t.equal(cached.switchedOff, 0, 'setKernelOptions({ cpuCache: false }) releases what the cache held')
  t.equal(cached.afterStepOff, 0, 'and a later step keeps nothing')
})
