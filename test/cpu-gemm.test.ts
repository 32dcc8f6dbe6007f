// The model's float32 CPU projections through oneDNN's sgemm (native/cpu_gemm.h) where the LibTorch links oneDNN
// beside OpenBLAS (Debian's), with the kernel option gemm 'blas' (LLAMAPRO_GEMM=blas) keeping at::linear. The two are
// independent
// implementations of the same products and their gradients — LibTorch's own autograd against llamapro's nodes (on
// LibTorch 1.x the fused attention too: LLAMAPRO_GEMM=blas is the whole former path) — so a training step must give
// the same loss and gradients both ways, to float32 rounding, for every architecture and freeze strategy, for
// products on one thread and on several.
import t from 'tap'
import { execFile } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { LlamaModel, info, kernelOptions, setKernelOptions } from '../lib/index.js'
import type { NativeTrainStepOptions } from '../lib/native/binding.js'
import { type FreezeOptions, freezePolicy } from '../lib/policy/freeze-policy.js'
import { gradientGap } from './helpers/gradient-gap.js'
import { REPO_ROOT } from './helpers/python.js'
import { tinyRawConfig } from './helpers/tiny-model.js'

const STEP: NativeTrainStepOptions = {
  lossMultiplier: 1,
  update: false,
  lr: 1e-2,
  beta1: 0.9,
  beta2: 0.999,
  eps: 1e-8,
  weightDecay: 0.01,
  maxGradNorm: 1,
  reportParamNorms: false,
}

// What the process has mapped once the addon is loaded, read independently of it: oneDNN is usable when LibTorch
// brought it in beside OpenBLAS.
const blasName = info().blas.name
const hasOneDnn = /libdnnl\.so/.test(readFileSync('/proc/self/maps', 'utf8')) && blasName === 'OpenBLAS'

t.test('info() names the library that runs the projections', async (t) => {
  const gemm = info().cpuGemm
  t.equal(gemm.library, hasOneDnn ? 'onednn' : 'blas', `libdnnl mapped beside OpenBLAS: ${hasOneDnn}`)
  if (hasOneDnn) t.ok(gemm.threads >= 1, `oneDNN products may use ${gemm.threads} threads`)
})

/** Ids for a right-padded sft batch: row r holds lengths[r] tokens, its first 3 unlabelled. */
function batch(lengths: number[], seq: number, vocab: number) {
  const ids = new Int32Array(lengths.length * seq)
  const labels = new Int32Array(lengths.length * seq).fill(-100)
  lengths.forEach((length, row) => {
    for (let i = 0; i < length; i++) {
      ids[row * seq + i] = 1 + ((row * 131 + i * 17 + 5) % (vocab - 1))
      if (i >= 3) labels[row * seq + i] = ids[row * seq + i]!
    }
  })
  return { ids, labels, batch: lengths.length, seq }
}

async function trained(
  gemm: 'onednn' | 'blas',
  raw: Record<string, unknown>,
  options: FreezeOptions,
  data: ReturnType<typeof batch>,
) {
  setKernelOptions({ gemm })
  const model = await LlamaModel.random(raw, { seed: 5 })
  const policy = freezePolicy(
    model.config.numLayers,
    model.parameters().map((p) => p.name),
    options,
  )
  await model.setTrainable(policy.trainable)
  model.native.configureOptimizer({ noDecay: [], step: 0, lossScaling: false })
  // One step, its gradients kept to compare (an AdamW update would turn gradients within rounding of zero into
  // weight changes of a visible part of lr: lr * g / (|g| + eps)).
  const { loss } = await model.native.trainStep(data.ids, data.labels, data.batch, data.seq, STEP)
  const evaluation = await model.native.loss(data.ids, data.labels, data.batch, data.seq)
  return { model, loss, evaluation, trainable: policy.trainable }
}

const initial = kernelOptions()
t.afterEach(() => {
  setKernelOptions(initial)
})

t.test(
  'oneDNN and LibTorch give the same training step',
  { skip: hasOneDnn ? false : 'this LibTorch has no oneDNN beside OpenBLAS: at::linear runs every product' },
  async (t) => {
    const data = batch([24, 11, 17, 6], 24, 160)
    // 96 rows x 256 x 512 (12.6 M multiply-adds) and its gradients: products on several threads; the 64-wide ones on
    // one.
    const wide = tinyRawConfig({ layers: 3, hidden: 256, intermediate: 512, heads: 4, kvHeads: 2, vocab: 160 })
    const cases: [string, Record<string, unknown>, FreezeOptions][] = [
      [
        'llama, LLaMA-Pro blocks (frozen layers between, input gradients only)',
        tinyRawConfig({ layers: 6, hidden: 64, intermediate: 128, heads: 4, kvHeads: 2, vocab: 160 }),
        { useLlamaPro: true, freezeTrainableLayers: 2 },
      ],
      [
        'qwen2 biases, tied embeddings, full fine-tuning',
        tinyRawConfig({ layers: 3, modelType: 'qwen2', kvHeads: 2, tie: true, vocab: 160 }),
        { finetuningType: 'full' },
      ],
      ['a 256-wide llama (multi-threaded products), last layer trains', wide, { freezeTrainableLayers: 1 }],
      ['a 256-wide llama, full fine-tuning', wide, { finetuningType: 'full' }],
    ]
    for (const [label, raw, options] of cases) {
      const blas = await trained('blas', raw, options, data)
      const onednn = await trained('onednn', raw, options, data)
      const relative = (a: number, b: number) => Math.abs(a - b) / Math.abs(b)
      t.ok(relative(onednn.loss, blas.loss) <= 1e-5, `${label}: loss ${onednn.loss} against ${blas.loss}`)
      t.ok(
        relative(onednn.evaluation.loss, blas.evaluation.loss) <= 1e-5,
        `${label}: evaluation (no graph) ${onednn.evaluation.loss} against ${blas.evaluation.loss}`,
      )
      const { worst, scales } = await gradientGap(onednn.model, blas.model, blas.trainable)
      t.ok(
        scales.every((s) => s > 0),
        `${label}: every trainable tensor has a gradient`,
      )
      t.ok(
        worst.relative <= 1e-4,
        `${label}: gradients equal to float32 rounding (worst ${worst.name}: ${worst.relative.toExponential(2)})`,
      )
      blas.model.dispose()
      onednn.model.dispose()
    }
  },
)

// OpenBLAS keeps one thread while oneDNN runs the products (two spinning pools on the same cores cost a tenth of a
// step); gemm 'blas' gives its threads back. In a child process: thread counts are process-wide. The child starts
// with LLAMAPRO_GEMM empty (the default) and LLAMAPRO_PROFILE_OPS=1 from the environment, and switches by the API.
const THREADS_SCRIPT = `
import { LlamaModel, info, setKernelOptions } from ${JSON.stringify(join(REPO_ROOT, 'dist', 'index.js'))}
const raw = { architectures: ['LlamaForCausalLM'], model_type: 'llama', vocab_size: 64, hidden_size: 32, intermediate_size: 64,
  num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2, rms_norm_eps: 1e-6, rope_theta: 10000, max_position_embeddings: 64 }
const model = await LlamaModel.random(raw, { seed: 1 })
const ids = new Int32Array(2 * 8).map((_, i) => 1 + (i * 7) % 63)
await model.setTrainable(['model.layers.1.mlp.down_proj.weight'])
model.native.configureOptimizer({ noDecay: [], step: 0, lossScaling: false })
const step = () => model.native.trainStep(ids, ids, 2, 8, { lossMultiplier: 1, update: false, lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0, maxGradNorm: 0, reportParamNorms: false })
const before = info()
await step()
const during = info()
setKernelOptions({ gemm: 'blas' })
await step()
const after = info()
console.log(JSON.stringify({ before: [before.threads.blas, before.cpuGemm], during: [during.threads.blas, during.cpuGemm], after: [after.threads.blas, after.cpuGemm] }))
model.dispose()
`

t.test(
  'OpenBLAS runs on one thread while oneDNN has the products, and gets its threads back',
  { skip: hasOneDnn ? false : 'no oneDNN beside OpenBLAS' },
  async (t) => {
    const { stdout, stderr } = await promisify(execFile)(
      process.execPath,
      ['--input-type=module', '-e', THREADS_SCRIPT],
      {
        cwd: REPO_ROOT,
        env: { ...process.env, OPENBLAS_NUM_THREADS: '2', LLAMAPRO_GEMM: '', LLAMAPRO_PROFILE_OPS: '1' },
      },
    )
    const seen = JSON.parse(stdout) as Record<
      'before' | 'during' | 'after',
      [number, { library: string; threads: number }]
    >
    t.same(
      seen.before,
      [2, { library: 'onednn', threads: 2 }],
      'before any product: OpenBLAS has its 2 threads, oneDNN would take them',
    )
    t.same(
      seen.during,
      [1, { library: 'onednn', threads: 2 }],
      'after a training step: OpenBLAS 1 thread, oneDNN products 2',
    )
    t.same(seen.after, [2, { library: 'blas', threads: 2 }], "gemm 'blas': OpenBLAS has its 2 threads again")
    // The op profile of each step says which library ran its products: the comparison above compared two paths.
    const [first, second] = stderr.split('llamapro op profile:').slice(1)
    t.match(first, /^llamapro::onednn_sgemm\s/m, 'the first step ran its products in oneDNN')
    t.notMatch(first, /^aten::mm\s/m, 'and none through at::mm')
    t.match(second, /^aten::mm\s/m, "the gemm 'blas' step ran them through at::mm")
    t.notMatch(second, /^llamapro::onednn_sgemm\s/m, 'and none in oneDNN')
  },
)
