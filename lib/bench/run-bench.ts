/**
 * `llamapro bench`: freeze strategies side by side on one model, timing the real native train step (the one
 * `llamapro train` calls), with the PyTorch-eager step of bench/reference/bench_train_step.py run in the same
 * invocation on the same shapes, strategy and thread count.
 */
import { execFile } from 'node:child_process'
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { type ModelConfig, parseModelConfig } from '../checkpoint/config.js'
import { type ModelDtype, parseModelDtype } from '../checkpoint/dtypes.js'
import { openCheckpoint } from '../checkpoint/checkpoint.js'
import { LlamaproError } from '../errors.js'
import { info, setThreads } from '../info.js'
import { type Device, LlamaModel } from '../model/llama-model.js'
import { native, PACKAGE_ROOT } from '../native/load.js'
import { freezePolicy } from '../policy/freeze-policy.js'
import { type FlopCount, flopsPerToken, peakFlops } from './flops.js'
import { type MachineInfo, machineInfo } from './machine.js'
import { PRESETS } from './presets.js'
import { findTorchPython } from './python.js'
import { type Strategy, parseStrategies } from './strategies.js'
import { loraPolicy } from '../adapters/lora-targets.js'
import { randomTokenIds } from '../util/random.js'

export interface BenchOptions {
  /** A preset name (tiny, small, 1b, 8b) or a model folder. */
  model: string
  strategies: string
  batch?: number
  seq?: number
  steps?: number
  warmup?: number
  /** LibTorch intra-op threads for both llamapro and the baseline (0: LibTorch's default). */
  threads?: number
  device?: Device
  dtype?: ModelDtype
  baseline?: 'python' | null
  /** Also time transformers' LlamaForCausalLM in the baseline (when it is installed). */
  transformers?: boolean
  python?: string
  /**
   * Also time all strategies again with their models side by side, one step of each in turn, so that the
   * comparison between strategies (LLaMA-Pro against full fine-tuning) sees the same machine state. Holds every
   * strategy's model at once.
   */
  paired?: boolean
  /**
   * Activation checkpointing settings to time (default [true], the model's default). With [true, false] every
   * strategy runs twice, named "<strategy>/ckpt" and "<strategy>/no-ckpt".
   */
  gradientCheckpointing?: boolean[]
  onProgress?: (message: string) => void
}

export interface Percentiles {
  median: number
  p10: number
  p90: number
}

export interface StrategyResult {
  strategy: string
  gradientCheckpointing: boolean
  trainableLayerIds: number[]
  msPerStep: Percentiles
  /** Of each step: the optimizer update (gradient norms, clipping, AdamW), median. */
  msUpdate: number
  tokensPerSecond: number
  trainableParams: number
  /** CPU allocation high-water mark, or CUDA max allocated, during the timed steps. */
  peakMemoryBytes: number | null
  /** Measured after a backward pass: gradient and AdamW state held by the model. */
  gradientBytes: number
  optimizerBytes: number
  flopsPerToken: number
  flops: FlopCount
  achievedFlopsPerSecond: number
  mfu: number | null
  baseline?: { implementation: string; msPerStep: Percentiles; peakMemoryBytes: number | null }
  transformers?: { msPerStep: Percentiles; peakMemoryBytes: number | null }
  /** llamapro / baseline step time. */
  ratio?: number
  /** With `paired`: step times measured alternating with the other strategies, and their update part. */
  paired?: { msPerStep: Percentiles; msUpdate: number }
}

export interface BenchReport {
  machine: MachineInfo
  device: string
  config: {
    model: string
    batch: number
    seq: number
    steps: number
    warmup: number
    threads: number
    dtype: ModelDtype
    layers: number
    hidden: number
    vocab: number
  }
  results: StrategyResult[]
  baselineTorch?: string
  notes: string[]
}

export function percentiles(values: readonly number[]): Percentiles {
  const sorted = [...values].sort((a, b) => a - b)
  const at = (q: number) => {
    const position = (sorted.length - 1) * q
    const lo = Math.floor(position)
    const hi = Math.ceil(position)
    return sorted[lo]! + (sorted[hi]! - sorted[lo]!) * (position - lo)
  }
  return { median: at(0.5), p10: at(0.1), p90: at(0.9) }
}

async function resolveModel(model: string): Promise<{
  name: string
  raw: Record<string, unknown>
  config: ModelConfig
  dir?: string
  batch?: number
  seq?: number
}> {
  const preset = PRESETS[model]
  if (preset)
    return {
      name: preset.name,
      raw: preset.config,
      config: parseModelConfig(preset.config, `preset ${model}`),
      batch: preset.batch,
      seq: preset.seq,
    }
  if (!existsSync(model)) {
    throw new LlamaproError(
      'LLAMAPRO_ARG',
      `"${model}" is neither a preset (${Object.keys(PRESETS).join(', ')}) nor a model folder`,
    )
  }
  const checkpoint = await openCheckpoint(model)
  return { name: checkpoint.dir, raw: checkpoint.rawConfig, config: checkpoint.config, dir: checkpoint.dir }
}

function runBaseline(
  python: string,
  request: unknown,
): Promise<{
  torch: string
  results: { name: string; implementation: string; ms: number[]; peakMemoryBytes: number | null }[]
}> {
  const script = join(PACKAGE_ROOT, 'bench', 'reference', 'bench_train_step.py')
  return new Promise((resolve, reject) => {
    const child = execFile(
      python,
      [script],
      { maxBuffer: 64 * 1024 * 1024, timeout: 3_600_000 },
      (error, stdout, stderr) => {
        if (error)
          reject(
            new LlamaproError(
              'LLAMAPRO_BENCH',
              `the Python baseline failed (${python} ${script}): ${error.message}\n${stderr}`,
            ),
          )
        else resolve(JSON.parse(stdout))
      },
    )
    child.stdin!.end(JSON.stringify(request))
  })
}

export async function runBench(options: BenchOptions): Promise<BenchReport> {
  const progress = options.onProgress ?? (() => {})
  const model = await resolveModel(options.model)
  const device = options.device ?? 'cpu'
  const dtype = options.dtype ?? (device === 'cpu' ? 'float32' : 'bfloat16')
  const batch = options.batch ?? model.batch ?? 4
  const seq = options.seq ?? model.seq ?? 128
  const steps = options.steps ?? 10
  const warmup = options.warmup ?? 3
  const threads = options.threads ?? 0
  if (threads > 0) setThreads(threads)
  const checkpointing = options.gradientCheckpointing ?? [true]
  if (checkpointing.length === 0)
    throw new LlamaproError('LLAMAPRO_ARG', 'gradientCheckpointing: give at least one setting')
  const strategies: Strategy[] = parseStrategies(options.strategies, model.config.numLayers).flatMap((s) =>
    checkpointing.map((on) => ({
      ...s,
      name: checkpointing.length > 1 ? `${s.name}/${on ? 'ckpt' : 'no-ckpt'}` : s.name,
      gradientCheckpointing: on,
    })),
  )
  const runtime = info()
  const deviceName = device === 'cpu' ? null : (runtime.cuda.devices[Number(device.split(':')[1] ?? 0)]?.name ?? null)
  const peak = peakFlops(deviceName)
  const deviceIndex = device === 'cpu' ? 0 : Number(device.split(':')[1] ?? 0)
  const tokens = batch * seq
  const ids = randomTokenIds(tokens, model.config.vocabSize, 1234)
  const notes: string[] = []
  const results: StrategyResult[] = []
  let baselineTorch: string | undefined
  // Found before any timing, so a missing torch is reported at once rather than after the first strategy.
  const python =
    options.baseline === 'python'
      ? (await findTorchPython({ explicit: options.python, packageRoot: PACKAGE_ROOT })).path
      : ''
  if (options.baseline === 'python' && model.dir)
    notes.push(
      'the Python baseline uses random weights of the same shape (bench_train_step.py builds the model from ' +
        'config.json)',
    )

  const stepOptions = {
    lossMultiplier: 1,
    update: true,
    lr: 1e-4,
    beta1: 0.9,
    beta2: 0.999,
    eps: 1e-8,
    weightDecay: 0,
    maxGradNorm: 1,
    reportParamNorms: false,
  }
  /** A model ready to train with `strategy`, and its training step. */
  const prepare = async (strategy: Strategy) => {
    progress(`${strategy.name}: building the model`)
    const gradientCheckpointing = strategy.gradientCheckpointing ?? true
    const instance = model.dir
      ? await LlamaModel.load(model.dir, { device, dtype, gradientCheckpointing })
      : await LlamaModel.random({ ...model.raw, torch_dtype: dtype }, { device, dtype, seed: 0, gradientCheckpointing })
    try {
      let params = instance.parameters()
      let policy: { trainable: string[]; trainableLayerIds: number[]; loraTargets?: Set<string> }
      if (strategy.lora) {
        const lora = loraPolicy(model.config.numLayers, params, strategy.options)
        await instance.addLora({
          targets: lora.targets,
          rank: strategy.lora.rank,
          alpha: 2 * strategy.lora.rank,
          seed: 0,
        })
        params = instance.parameters()
        policy = {
          trainable: lora.trainable,
          trainableLayerIds: lora.trainableLayerIds,
          loraTargets: new Set(lora.targets),
        }
      } else {
        policy = freezePolicy(
          model.config.numLayers,
          params.map((p) => p.name),
          strategy.options,
        )
      }
      await instance.setTrainable(policy.trainable, { masterDtype: 'float32' })
      instance.optimizer.configure({ noDecay: [], step: 0, lossScaling: false })
      const step = () => instance.trainStep({ ids, labels: ids, batch, seq }, stepOptions)
      return { instance, params, policy, step }
    } catch (error) {
      instance.dispose()
      throw error
    }
  }

  for (const strategy of strategies) {
    let trainable: string[] = []
    const { instance, params, policy, step } = await prepare(strategy)
    try {
      trainable = policy.trainable
      progress(`${strategy.name}: ${warmup} warm-up steps`)
      for (let i = 0; i < warmup; i++) await step()
      native().resetPeakMemory(deviceIndex)
      progress(`${strategy.name}: ${steps} timed steps`)
      const times: number[] = []
      const updates: number[] = []
      for (let i = 0; i < steps; i++) {
        const start = performance.now()
        const result = await step() // returns the loss, read on the device: the step has finished
        times.push(performance.now() - start)
        updates.push(result.updateMs)
      }
      const memory = native().memoryStats(deviceIndex)
      const peakMemoryBytes = device === 'cpu' ? memory.cpu.peak : (memory.cuda?.peak ?? null)
      await instance.trainStep({ ids, labels: ids, batch, seq }, { ...stepOptions, update: false })
      const held = instance.memory()
      const trainableSet = new Set(policy.trainable)
      const flops = flopsPerToken(
        model.config,
        trainableSet,
        seq,
        policy.loraTargets && strategy.lora ? { rank: strategy.lora.rank, targets: policy.loraTargets } : undefined,
      )
      const msPerStep = percentiles(times)
      const tokensPerSecond = tokens / (msPerStep.median / 1000)
      results.push({
        strategy: strategy.name,
        gradientCheckpointing: strategy.gradientCheckpointing ?? true,
        trainableLayerIds: policy.trainableLayerIds,
        msPerStep,
        msUpdate: percentiles(updates).median,
        tokensPerSecond,
        trainableParams: params.filter((p) => trainableSet.has(p.name)).reduce((s, p) => s + p.numel, 0),
        peakMemoryBytes,
        gradientBytes: held.gradientBytes,
        optimizerBytes: held.optimizerBytes,
        flopsPerToken: flops.total,
        flops,
        achievedFlopsPerSecond: flops.total * tokensPerSecond,
        mfu: peak ? (flops.total * tokensPerSecond) / peak : null,
      })
    } finally {
      instance.dispose()
    }
    // The baseline runs right after, so both sides of a ratio see the machine in the same state.
    if (options.baseline === 'python' && strategy.lora) {
      notes.push(
        `${strategy.name}: no PyTorch-eager baseline (bench_train_step.py has no LoRA); compare it with pro:N in a ` +
          `paired run`,
      )
    } else if (options.baseline === 'python') {
      progress(`${strategy.name}: the same step in PyTorch eager (${python})`)
      const baseline = await runBaseline(python, {
        config: { ...model.raw, torch_dtype: dtype },
        dtype,
        device,
        threads: threads || runtime.threads.intraOp,
        batch,
        seq,
        steps,
        warmup,
        seed: 0,
        transformers: options.transformers ?? device !== 'cpu',
        strategies: [{ name: strategy.name, trainable }],
      })
      baselineTorch = baseline.torch
      const result = results[results.length - 1]!
      const eager = baseline.results.find((r) => r.implementation === 'pytorch-eager')
      const hf = baseline.results.find((r) => r.implementation === 'transformers')
      if (eager) {
        result.baseline = {
          implementation: 'pytorch-eager',
          msPerStep: percentiles(eager.ms),
          peakMemoryBytes: eager.peakMemoryBytes,
        }
        result.ratio = result.msPerStep.median / result.baseline.msPerStep.median
      }
      if (hf) result.transformers = { msPerStep: percentiles(hf.ms), peakMemoryBytes: hf.peakMemoryBytes }
    }
  }

  if (options.paired && strategies.length > 1)
    await timePaired(strategies, prepare, results, { steps, warmup, progress })

  return {
    machine: machineInfo(),
    device: deviceName ?? device,
    config: {
      model: model.name,
      batch,
      seq,
      steps,
      warmup,
      threads: threads || runtime.threads.intraOp,
      dtype: parseModelDtype(dtype)!,
      layers: model.config.numLayers,
      hidden: model.config.hiddenSize,
      vocab: model.config.vocabSize,
    },
    results,
    baselineTorch,
    notes,
  }
}

/**
 * Every strategy's model side by side; after warm-up, each round times one step of every strategy, in an order
 * that rotates from round to round, so slow drifts of the machine (other tenants, clocks) reach all alike.
 */
async function timePaired(
  strategies: readonly Strategy[],
  prepare: (strategy: Strategy) => Promise<{ instance: LlamaModel; step: () => Promise<{ updateMs: number }> }>,
  results: StrategyResult[],
  options: { steps: number; warmup: number; progress: (message: string) => void },
): Promise<void> {
  const prepared: { instance: LlamaModel; step: () => Promise<{ updateMs: number }> }[] = []
  try {
    for (const strategy of strategies) prepared.push(await prepare(strategy))
    options.progress(`paired: ${options.warmup} warm-up steps of each strategy`)
    for (const { step } of prepared) for (let i = 0; i < options.warmup; i++) await step()
    options.progress(`paired: ${options.steps} rounds of one step per strategy`)
    const times = prepared.map(() => [] as number[])
    const updates = prepared.map(() => [] as number[])
    for (let round = 0; round < options.steps; round++) {
      for (let k = 0; k < prepared.length; k++) {
        const which = (round + k) % prepared.length
        const start = performance.now()
        const result = await prepared[which]!.step()
        times[which]!.push(performance.now() - start)
        updates[which]!.push(result.updateMs)
      }
    }
    results.forEach(
      (result, k) => (result.paired = { msPerStep: percentiles(times[k]!), msUpdate: percentiles(updates[k]!).median }),
    )
  } finally {
    for (const { instance } of prepared) instance.dispose()
  }
}
