import t from 'tap'
import { execFile } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { parseModelConfig } from '../lib/checkpoint/config.js'
import { expectedParameters } from '../lib/checkpoint/parameters.js'
import { flopsPerToken, peakFlops } from '../lib/bench/flops.js'
import { findings, formatTable, markdownReport, writeReport } from '../lib/bench/report.js'
import { percentiles, runBench } from '../lib/bench/run-bench.js'
import { parseStrategies } from '../lib/bench/strategies.js'
import { PRESETS } from '../lib/bench/presets.js'
import { freezePolicy } from '../lib/policy/freeze-policy.js'
import { REPO_ROOT } from './helpers/python.js'

const CLI = join(REPO_ROOT, 'dist', 'cli', 'main.js')

t.test('FLOPs per token: full fine-tuning is 6 x matmul parameters plus attention', async (t) => {
  const config = parseModelConfig(PRESETS.small!.config)
  const names = expectedParameters(config).map((p) => p.name)
  const seq = 128
  const { hiddenSize: h, intermediateSize: f, numLayers: L, vocabSize: V } = config
  const q = config.numHeads * config.headDim
  const kv = config.numKvHeads * config.headDim
  const matmulParams = L * (h * q + 2 * h * kv + q * h + 3 * h * f) + h * V
  const full = flopsPerToken(config, new Set(names), seq)
  t.equal(full.forward, 2 * matmulParams + 4 * seq * q * L)
  t.equal(full.activationGradients, 2 * matmulParams + 8 * seq * q * L)
  t.equal(full.weightGradients, 2 * matmulParams)
  t.equal(full.total, 6 * matmulParams + 12 * seq * q * L)

  const headOnly = flopsPerToken(config, new Set(['lm_head.weight']), seq)
  t.same(
    headOnly,
    { forward: full.forward, activationGradients: 0, weightGradients: 2 * h * V, total: full.forward + 2 * h * V },
    'nothing below the head needs a gradient',
  )

  // LLaMA-Pro with 2 of 8 layers (3 and 7). Layer 3's norm weights train, so every projection of layer 3 already
  // has an input that needs a gradient: activation gradients run through layers 3..7 and the head, none below.
  const pro = freezePolicy(L, names, { useLlamaPro: true, freezeTrainableLayers: 2 })
  t.same(pro.trainableLayerIds, [3, 7])
  const perLayer = h * q + 2 * h * kv + q * h + 3 * h * f
  const flops = flopsPerToken(config, new Set(pro.trainable), seq)
  t.equal(flops.weightGradients, 2 * 2 * perLayer)
  t.equal(flops.activationGradients, 2 * h * V + 5 * (2 * perLayer + 8 * seq * q))
  // Training only layer 3's MLP: nothing in its attention needs a gradient, and below the MLP's gate/up no input does.
  const mlp = flopsPerToken(
    config,
    new Set([
      'model.layers.3.mlp.gate_proj.weight',
      'model.layers.3.mlp.up_proj.weight',
      'model.layers.3.mlp.down_proj.weight',
    ]),
    seq,
  )
  t.equal(mlp.activationGradients, 2 * h * V + 4 * (2 * perLayer + 8 * seq * q) + 2 * f * h)
  t.equal(mlp.weightGradients, 2 * 3 * h * f)
})

t.test('peak FLOPs are known for the GPUs llamapro is measured on', async (t) => {
  t.equal(peakFlops('NVIDIA H100 80GB HBM3'), 989e12)
  t.equal(peakFlops('NVIDIA H200'), 989e12)
  t.equal(peakFlops(null), null)
})

t.test('strategies parse, ids swallow the integers that follow', async (t) => {
  const parsed = parseStrategies('full,ids:1,5,pro:2,modules:mlp+self_attn,last:3,first:1', 8)
  t.same(
    parsed.map((s) => s.name),
    ['full', 'ids:1,5', 'pro:2', 'modules:mlp+self_attn', 'last:3', 'first:1'],
  )
  t.same(parsed[1]!.options, { freezeTrainableLayerIds: '1,5' })
  t.same(parsed[3]!.options, { freezeTrainableLayers: 8, freezeTrainableModules: ['mlp', 'self_attn'] })
  t.same(parsed[5]!.options, { freezeTrainableLayers: -1 })
  t.throws(() => parseStrategies('last', 8), { message: /needs a positive integer/ })
  t.throws(() => parseStrategies('half', 8), { message: /unknown strategy "half"/ })
  t.same(percentiles([5, 1, 3, 2, 4]), { median: 3, p10: 1.4, p90: 4.6 })
})

t.test('bench reports every field per strategy, with the PyTorch baseline in the same run', async (t) => {
  const report = await runBench({
    model: 'tiny',
    strategies: 'full,pro:2',
    steps: 3,
    warmup: 1,
    threads: 1,
    baseline: 'python',
  })
  t.equal(report.results.length, 2)
  for (const r of report.results) {
    for (const key of [
      'strategy',
      'msPerStep',
      'tokensPerSecond',
      'trainableParams',
      'peakMemoryBytes',
      'flopsPerToken',
      'baseline',
      'ratio',
    ])
      t.ok(key in r, key)
    t.ok(r.msPerStep.p10 <= r.msPerStep.median && r.msPerStep.median <= r.msPerStep.p90)
    t.ok(r.baseline!.msPerStep.median > 0)
    t.equal(r.gradientBytes, 4 * r.trainableParams, 'gradients held only for trainable parameters (measured)')
    t.equal(r.optimizerBytes, 8 * r.trainableParams, 'optimizer state only for trainable parameters (measured)')
  }
  t.ok(
    report.results[1]!.peakMemoryBytes! < report.results[0]!.peakMemoryBytes!,
    'LLaMA-Pro peaks below full fine-tuning',
  )
  t.match(report.baselineTorch, /^\d+\.\d+/)
  const table = formatTable(report)
  t.match(table, /^strategy\s+ms\/step median/)
  t.match(table, /\nfull\s/)
  t.match(findings(report).join('\n'), /pro:2: step time [\d.]+% of full fine-tuning, analytic FLOPs [\d.]+%/)
  const md = markdownReport(report, 'llamapro bench tiny', 0.7)
  t.match(md, /Machine: .* cores/)
  t.match(md, /Command: `llamapro bench tiny`/)
  t.match(md, /llamapro \/ PyTorch = [\d.]+ \(goal <= 0\.7: (met|missed)\)/)
  const dir = t.testdir()
  await writeReport(dir, report, 'llamapro bench tiny')
  for (const file of ['report.json', 'report.md', 'step-time.svg', 'step-time.png', 'memory.svg', 'memory.png'])
    t.ok(existsSync(join(dir, file)), file)
  t.equal(JSON.parse(readFileSync(join(dir, 'report.json'), 'utf8')).command, 'llamapro bench tiny')
})

t.test(
  '--paired times the strategies alternately and compares LLaMA-Pro with full fine-tuning on those steps',
  async (t) => {
    const progress: string[] = []
    const report = await runBench({
      model: 'tiny',
      strategies: 'full,last:1,pro:2',
      steps: 4,
      warmup: 1,
      threads: 1,
      paired: true,
      onProgress: (m) => progress.push(m),
    })
    for (const r of report.results) {
      t.ok(r.paired, `${r.strategy} has paired timings`)
      t.ok(
        r.paired!.msPerStep.p10 <= r.paired!.msPerStep.median && r.paired!.msPerStep.median <= r.paired!.msPerStep.p90,
      )
      t.ok(r.paired!.msUpdate >= 0)
    }
    t.match(progress.join('\n'), /paired: 4 rounds of one step per strategy/)
    t.match(
      findings(report).join('\n'),
      /pro:2: step time [\d.]+% of full fine-tuning \(paired: steps timed alternately\), analytic FLOPs/,
    )
    const single = await runBench({ model: 'tiny', strategies: 'full', steps: 1, warmup: 0, paired: true })
    t.notOk(single.results[0]!.paired, 'one strategy has nothing to pair with')
  },
)

t.test('llamapro bench --json prints one object other tools read', async (t) => {
  const { stdout } = await promisify(execFile)(process.execPath, [
    CLI,
    'bench',
    'tiny',
    '--strategies',
    'last:1',
    '--steps',
    '2',
    '--warmup',
    '0',
    '--json',
  ])
  const report = JSON.parse(stdout)
  for (const key of ['machine', 'device', 'config', 'results']) t.ok(key in report, key)
  t.same(Object.keys(report.results[0].msPerStep), ['median', 'p10', 'p90'])
  const bad = await promisify(execFile)(process.execPath, [CLI, 'bench', 'huge']).catch((e) => e)
  t.equal(bad.code, 1)
  t.match(bad.stderr, /"huge" is neither a preset \(tiny, small, 1b, 8b\) nor a model folder/)
})
