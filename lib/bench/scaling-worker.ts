/**
 * One rank of `llamapro bench --nproc N` (started by lib/bench/scaling.ts with torchrun's environment, or with
 * none for the one-process baseline): builds the model, joins the process group, times the real train step with
 * its gradient all-reduce, and prints its measurements as one JSON line.
 */
import { distributedFromEnv } from '../distributed/environment.js'
import { ProcessGroup } from '../distributed/process-group.js'
import { setThreads } from '../info.js'
import { type Device, LlamaModel } from '../model/llama-model.js'
import { freezePolicy } from '../policy/freeze-policy.js'
import { randomTokenIds } from '../util/random.js'
import { parseStrategies } from './strategies.js'

export interface ScalingWorkerRequest {
  raw: Record<string, unknown>
  dir?: string
  numLayers: number
  vocabSize: number
  strategy: string
  batch: number
  seq: number
  steps: number
  warmup: number
  threads: number
  device: string
  dtype: string
  /** 1: ZeRO stage 1 over the ranks. */
  zeroStage?: 0 | 1
}

export interface ScalingWorkerResult {
  rank: number
  ms: number[]
  reduceMs: number[]
  reducedBytes: number
  trainableParams: number
  totalParams: number
  /** AdamW state this rank holds after the timed steps. */
  optimizerBytes: number
}

async function main(): Promise<void> {
  const request = JSON.parse(process.argv[2]!) as ScalingWorkerRequest
  if (request.threads > 0) setThreads(request.threads)
  const env = distributedFromEnv()
  const group =
    env && env.worldSize > 1 ? await ProcessGroup.connect(env, { timeoutSeconds: 300, device: request.device }) : null
  const device = request.device as Device
  const model = request.dir
    ? await LlamaModel.load(request.dir, { device, dtype: request.dtype as never })
    : await LlamaModel.random(
        { ...request.raw, torch_dtype: request.dtype },
        { device, dtype: request.dtype as never, seed: 0 },
      )
  try {
    const [strategy] = parseStrategies(request.strategy, request.numLayers)
    const params = model.parameters()
    const policy = freezePolicy(
      request.numLayers,
      params.map((p) => p.name),
      strategy!.options,
    )
    await model.setTrainable(policy.trainable, { masterDtype: 'float32' })
    model.optimizer.configure({ noDecay: [], step: 0, lossScaling: false })
    if (group) model.gradientSync.attach(group, { zeroStage: request.zeroStage ?? 0 })
    // Each rank its own batch, as in training.
    const ids = randomTokenIds(request.batch * request.seq, request.vocabSize, 1234 + (env?.rank ?? 0))
    const options = {
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
    const tokens = { ids, labels: ids, batch: request.batch, seq: request.seq }
    const step = () => model.trainStep(tokens, options)
    for (let i = 0; i < request.warmup; i++) await step()
    if (group) await group.barrier('starting the timed steps together')
    const result: ScalingWorkerResult = {
      rank: env?.rank ?? 0,
      ms: [],
      reduceMs: [],
      reducedBytes: 0,
      trainableParams: 0,
      totalParams: 0,
      optimizerBytes: 0,
    }
    for (let i = 0; i < request.steps; i++) {
      const start = performance.now()
      const r = await step()
      result.ms.push(performance.now() - start)
      result.reduceMs.push(r.reduceMs ?? 0)
      result.reducedBytes = r.reducedBytes ?? 0
    }
    result.trainableParams = params.filter((p) => policy.trainable.includes(p.name)).reduce((s, p) => s + p.numel, 0)
    result.totalParams = params.reduce((s, p) => s + p.numel, 0)
    result.optimizerBytes = model.optimizer.stateBytes()
    if (group) await group.barrier('ending the timed steps together')
    process.stdout.write(`${JSON.stringify(result)}\n`)
  } finally {
    model.dispose()
    await group?.destroy()
  }
}

await main()
