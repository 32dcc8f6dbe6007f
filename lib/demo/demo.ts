/**
 * `llamapro demo`: the LLaMA-Pro claim — learn a new domain, keep the old one — shown end to end on a tiny model
 * in about two minutes on two idle CPU cores, with the same code paths a real run uses (train, expand, verify, train).
 *
 *  1. a tokenizer and a 4-layer base model, pre-trained on corpus A (prose);
 *  2. block expansion: 4 -> 6 layers, the new blocks identity maps (verified);
 *  3. LLaMA-Pro: only the new blocks train on corpus B (code);
 *  4. the baseline: a full fine-tune of the base model on B, same steps and learning rate;
 *  5. held-out loss on A and on B for all three, printed and plotted.
 * Steps 3 and 4 run with several data-order seeds (default 3), and "forgets less" / "learns more" are stated only
 * by the sweep's rule (lib/sweep/statistics.ts): when the mean ± std intervals over the seeds do not overlap.
 */
import { mkdir, writeFile } from 'node:fs/promises'
import { basename, dirname, join, resolve } from 'node:path'
import { openCheckpoint } from '../checkpoint/checkpoint.js'
import { writeTrainedTokenizer } from '../data/bpe-trainer.js'
import { collate } from '../data/batches.js'
import { preprocess } from '../data/preprocess.js'
import { loadTokenizer } from '../data/tokenizer.js'
import { expandCheckpoint } from '../expand/expand-checkpoint.js'
import { verifyExpansion } from '../expand/verify.js'
import { LlamaModel } from '../model/llama-model.js'
import { parseTrainConfig } from '../train/config.js'
import { type TrainOverrides, trainOverrides } from '../train/overrides.js'
import type { TrainEvent } from '../train/events.js'
import { train } from '../train/trainer.js'
import { checkOutputDir, describeStaleRemoval, removeStaleTemporaries } from '../util/atomic-dir.js'
import { barChart, lineChart } from '../util/chart.js'
import { svgToPng } from '../util/svg-png.js'
import { type Spread, type Verdict, spread, statement } from '../sweep/statistics.js'
import { corpusA, corpusB } from './corpora.js'
import { LlamaproError } from '../errors.js'

export interface DemoOptions {
  outDir: string
  force?: boolean
  /** Optimizer steps on corpus B for each fine-tune (default 150). */
  steps?: number
  /** Data-order seeds of each of the two fine-tunes (default 3): the spread the statements are judged against. */
  seeds?: number
  /** Optimizer steps of the base model's pre-training on corpus A (default 400). */
  preTrainSteps?: number
  log?: (line: string) => void
  onEvent?: (stage: string, event: TrainEvent) => void
  signal?: AbortSignal
}

export interface HeldOutLoss {
  a: number
  b: number
}

export interface DemoResult {
  outDir: string
  base: HeldOutLoss
  /** Means over the seeds. */
  llamaPro: HeldOutLoss
  fullFineTune: HeldOutLoss
  seeds: number[]
  /** Each seed's held-out losses, in the order of `seeds`. */
  runs: { llamaPro: HeldOutLoss[]; fullFineTune: HeldOutLoss[] }
  /** Loss rise on A (forgetting) and drop on B (learning), mean ± std over the seeds. */
  forgot: { llamaPro: Spread; fullFineTune: Spread }
  learned: { llamaPro: Spread; fullFineTune: Spread }
  /** The sweep's rule applied to them: LLaMA-Pro against the full fine-tune. */
  statements: { forgetting: { verdict: Verdict; text: string }; learning: { verdict: Verdict; text: string } }
  trainableParams: { llamaPro: number; fullFineTune: number }
  curves: { llamaPro: [number, number][]; fullFineTune: [number, number][] }
  plots: string[]
  seconds: number
}

const CUTOFF = 64
/** The demo's output folders inside outDir. */
const STAGE_DIRS = ['init', 'tokenizer', 'base', 'base-expanded', 'llama-pro', 'full-fine-tune']

const BASE_CONFIG = {
  architectures: ['LlamaForCausalLM'],
  model_type: 'llama',
  hidden_size: 128,
  intermediate_size: 344,
  num_hidden_layers: 4,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  max_position_embeddings: 256,
  rms_norm_eps: 1e-5,
  rope_theta: 10000,
  tie_word_embeddings: false,
  torch_dtype: 'float32',
  initializer_range: 0.02,
  hidden_act: 'silu',
}

async function writeJsonl(path: string, texts: readonly string[]): Promise<void> {
  await writeFile(path, `${texts.map((text) => JSON.stringify({ text })).join('\n')}\n`)
}

/** Token-weighted mean loss of a model on held-out texts, cut into blocks as training does. */
async function heldOutLoss(modelDir: string, texts: readonly string[]): Promise<number> {
  const tokenizer = await loadTokenizer(modelDir)
  const { sequences } = preprocess(
    texts.map((text) => ({ kind: 'text' as const, text })),
    'pt',
    tokenizer,
    undefined,
    CUTOFF,
    true,
  )
  const model = await LlamaModel.load(modelDir)
  try {
    let weighted = 0
    let tokens = 0
    for (let i = 0; i < sequences.length; i += 16) {
      const batch = collate(sequences.slice(i, i + 16), tokenizer.padId)
      const result = await model.lossDetail(
        { data: batch.ids, shape: [batch.batch, batch.seq] },
        { data: batch.labels, shape: [batch.batch, batch.seq] },
      )
      weighted += result.loss * result.tokens
      tokens += result.tokens
    }
    return weighted / tokens
  } finally {
    model.dispose()
  }
}

export interface DemoChartInput {
  base: HeldOutLoss
  runs: { llamaPro: HeldOutLoss[]; fullFineTune: HeldOutLoss[] }
  seeds: number[]
  /** Each seed's training loss curve on corpus B, in the order of seeds. */
  seedCurves: { llamaPro: [number, number][][]; fullFineTune: [number, number][][] }
}

/**
 * demo.svg (held-out losses: the means over the seeds, with ± one std whiskers, the spread the statements are
 * judged against; the base model is one model, without spread) and demo-training.svg (loss curves, mean ± std).
 */
export function demoCharts(input: DemoChartInput): { bars: string; training: string } {
  const { base, runs, seeds } = input
  const of = (arm: HeldOutLoss[], key: 'a' | 'b') => spread(arm.map((r) => r[key]))
  const [pro, full] = [runs.llamaPro, runs.fullFineTune]
  const over = seeds.length > 1 ? `mean ± std of ${seeds.length} seeds` : `seed ${seeds[0]}`
  const group = (label: string, key: 'a' | 'b') => ({
    label,
    values: [base[key], of(pro, key).mean, of(full, key).mean],
    errors: [0, of(pro, key).std, of(full, key).std],
  })
  const bars = barChart({
    title: 'Held-out loss after learning corpus B (lower is better)',
    yLabel: 'cross-entropy',
    legend: ['base (trained on A)', `LLaMA-Pro (new blocks on B), ${over}`, `full fine-tune on B, ${over}`],
    groups: [group('corpus A: prose (keep)', 'a'), group('corpus B: code (learn)', 'b')],
    format: (v) => v.toFixed(2),
  })
  const training = lineChart({
    title: `Training loss on corpus B (${over})`,
    xLabel: 'step',
    yLabel: 'loss',
    series: [
      { label: 'LLaMA-Pro', ...meanCurve(input.seedCurves.llamaPro) },
      { label: 'full fine-tune', ...meanCurve(input.seedCurves.fullFineTune) },
    ],
  })
  return { bars, training }
}

/** Mean and sample std over the seeds' loss curves, at the steps every seed logged. */
export function meanCurve(curves: readonly [number, number][][]): { points: [number, number][]; std: number[] } {
  const bySeed = curves.map((curve) => new Map(curve))
  const steps = (curves[0] ?? []).map(([step]) => step).filter((step) => bySeed.every((m) => m.has(step)))
  const spreads = steps.map((step) => spread(bySeed.map((m) => m.get(step)!)))
  return { points: steps.map((step, i) => [step, spreads[i]!.mean]), std: spreads.map((s) => s.std) }
}

export async function runDemo(options: DemoOptions): Promise<DemoResult> {
  const started = performance.now()
  const log = options.log ?? (() => {})
  // Absolute, so the stage configs below mean the same folders whatever they resolve relative paths against.
  const out = resolve(options.outDir)
  const steps = options.steps ?? 150
  const seedCount = options.seeds ?? 3
  if (!Number.isInteger(seedCount) || seedCount < 1)
    throw new LlamaproError('LLAMAPRO_ARG', `seeds must be a positive integer, got ${seedCount}`)
  const seeds = Array.from({ length: seedCount }, (_, k) => k + 1)
  // A killed demo leaves temporaries (of its model saves, expansion and checkpoints): remove those whose process is
  // gone.
  const stale = await removeStaleTemporaries(dirname(out), { target: basename(out) })
  const seedDirs = seeds.flatMap((seed) => [join('llama-pro', `seed-${seed}`), join('full-fine-tune', `seed-${seed}`)])
  for (const dir of [out, ...[...STAGE_DIRS, ...seedDirs].map((name) => join(out, name))])
    stale.push(...(await removeStaleTemporaries(dir)))
  if (stale.length > 0) log(describeStaleRemoval(stale))
  await checkOutputDir(out, options.force ?? false, 'pass --force')
  await mkdir(join(out, 'data'), { recursive: true })

  const [trainA, heldA] = [corpusA(1500, 1), corpusA(150, 101)]
  const [trainB, heldB] = [corpusB(1500, 2), corpusB(150, 102)]
  // The base model sees a little code among its prose, as real base models do: the tokens of B are known to it,
  // the domain is not.
  await writeJsonl(join(out, 'data', 'a.jsonl'), [...trainA, ...trainB.slice(0, 75)])
  await writeJsonl(join(out, 'data', 'b.jsonl'), trainB)

  const init = join(out, 'init')
  const vocab = await writeTrainedTokenizer(
    join(out, 'tokenizer'),
    [...trainA.slice(0, 500), ...trainB.slice(0, 500)],
    384,
    256,
  )
  const random = await LlamaModel.random(
    { ...BASE_CONFIG, vocab_size: vocab, eos_token_id: 0, pad_token_id: 1 },
    { seed: 7 },
  )
  await random.save(init, { overwrite: true, onWarning: log })
  random.dispose()
  await writeTrainedTokenizer(init, [...trainA.slice(0, 500), ...trainB.slice(0, 500)], 384, 256)
  log(
    `1. tokenizer: byte-level BPE with ${vocab} tokens; base model: ${BASE_CONFIG.num_hidden_layers} layers of width ` +
      `${BASE_CONFIG.hidden_size}, random`,
  )

  const common = trainOverrides({
    stage: 'pt',
    cutoff_len: CUTOFF,
    per_device_train_batch_size: 16,
    logging_steps: 10,
    save_strategy: 'no',
    overwrite_output_dir: true,
    lr_scheduler_type: 'cosine',
    warmup_ratio: 0.05,
    seed: 1,
  })
  const run = async (stage: string, raw: TrainOverrides) => {
    const curve: [number, number][] = []
    const result = await train(parseTrainConfig(trainOverrides(common, raw), `demo (${stage})`, out), {
      signal: options.signal,
      onEvent: (event) => {
        if (event.type === 'log' && event.record.loss !== undefined)
          curve.push([event.record.current_steps, event.record.loss])
        options.onEvent?.(stage, event)
      },
    })
    // An interrupted stage saved its checkpoint; the demo's later stages would only compare half-trained models.
    options.signal?.throwIfAborted()
    return { result, curve }
  }

  const base = join(out, 'base')
  await run('pre-train on A', {
    model_name_or_path: init,
    dataset: join(out, 'data', 'a.jsonl'),
    output_dir: base,
    finetuning_type: 'full',
    learning_rate: 3e-3,
    max_steps: options.preTrainSteps ?? 400,
  })
  const baseLoss: HeldOutLoss = { a: await heldOutLoss(base, heldA), b: await heldOutLoss(base, heldB) }
  log(
    `2. pre-trained on corpus A (prose, with 5% code): held-out loss A ${baseLoss.a.toFixed(3)}, B ` +
      `${baseLoss.b.toFixed(3)}`,
  )

  const pro = join(out, 'base-expanded')
  const expansion = await expandCheckpoint(base, pro, { numExpand: 2, force: true, onWarning: log })
  const verified = await verifyExpansion(base, pro)
  log(
    `3. expanded ${expansion.originalNumLayers} -> ${expansion.numLayers} layers, new blocks ` +
      `${expansion.newLayerIds.join(', ')}; ` +
      `verify: ${verified.ok ? 'identity blocks, logits identical' : verified.failures.join('; ')}`,
  )

  const fineTune = { dataset: join(out, 'data', 'b.jsonl'), learning_rate: 5e-4, max_steps: steps }
  const proRuns: HeldOutLoss[] = []
  const fullRuns: HeldOutLoss[] = []
  const curves: { llamaPro: [number, number][]; fullFineTune: [number, number][] } = { llamaPro: [], fullFineTune: [] }
  const seedCurves: DemoChartInput['seedCurves'] = { llamaPro: [], fullFineTune: [] }
  for (const seed of seeds) {
    const proDir = join(out, 'llama-pro', `seed-${seed}`)
    const proRun = await run(`LLaMA-Pro on B, seed ${seed}`, {
      ...fineTune,
      seed,
      model_name_or_path: pro,
      output_dir: proDir,
      finetuning_type: 'freeze',
      use_llama_pro: true,
      freeze_trainable_layers: 2,
    })
    proRuns.push({ a: await heldOutLoss(proDir, heldA), b: await heldOutLoss(proDir, heldB) })
    const fullDir = join(out, 'full-fine-tune', `seed-${seed}`)
    const fullRun = await run(`full fine-tune on B, seed ${seed}`, {
      ...fineTune,
      seed,
      model_name_or_path: base,
      output_dir: fullDir,
      finetuning_type: 'full',
    })
    fullRuns.push({ a: await heldOutLoss(fullDir, heldA), b: await heldOutLoss(fullDir, heldB) })
    if (seed === seeds[0]) [curves.llamaPro, curves.fullFineTune] = [proRun.curve, fullRun.curve]
    seedCurves.llamaPro.push(proRun.curve)
    seedCurves.fullFineTune.push(fullRun.curve)
  }
  const mean = (runs: HeldOutLoss[]): HeldOutLoss => ({
    a: spread(runs.map((r) => r.a)).mean,
    b: spread(runs.map((r) => r.b)).mean,
  })
  const [proLoss, fullLoss] = [mean(proRuns), mean(fullRuns)]
  log(
    `4. LLaMA-Pro: trained only the new blocks on corpus B (code) for ${steps} steps, data-order seeds ` +
      `${seeds.join(', ')}`,
  )
  log(
    `5. baseline: full fine-tune of the ${BASE_CONFIG.num_hidden_layers}-layer base on corpus B, same steps, ` +
      `learning rate and seeds`,
  )
  const forgot = {
    llamaPro: spread(proRuns.map((r) => r.a - baseLoss.a)),
    fullFineTune: spread(fullRuns.map((r) => r.a - baseLoss.a)),
  }
  const learned = {
    llamaPro: spread(proRuns.map((r) => baseLoss.b - r.b)),
    fullFineTune: spread(fullRuns.map((r) => baseLoss.b - r.b)),
  }
  const statements = {
    forgetting: statement(
      { name: 'LLaMA-Pro', value: forgot.llamaPro },
      { name: 'the full fine-tune', value: forgot.fullFineTune },
      'forgets less than',
      'forgets more than',
      'loss rise on A',
    ),
    learning: statement(
      { name: 'LLaMA-Pro', value: learned.llamaPro },
      { name: 'the full fine-tune', value: learned.fullFineTune },
      'learns less than',
      'learns more than',
      'loss drop on B',
    ),
  }

  const runs = { llamaPro: proRuns, fullFineTune: fullRuns }
  const { bars, training } = demoCharts({ base: baseLoss, runs, seeds, seedCurves })
  const plots: string[] = []
  for (const [name, svg] of [
    ['demo', bars],
    ['demo-training', training],
  ] as const) {
    await writeFile(join(out, `${name}.svg`), svg)
    plots.push(join(out, `${name}.svg`))
    const png = svgToPng(svg)
    if (png) {
      await writeFile(join(out, `${name}.png`), png)
      plots.push(join(out, `${name}.png`))
    }
  }
  const result: DemoResult = {
    outDir: out,
    base: baseLoss,
    llamaPro: proLoss,
    fullFineTune: fullLoss,
    seeds,
    runs,
    forgot,
    learned,
    statements,
    trainableParams: { llamaPro: 0, fullFineTune: 0 },
    curves,
    plots,
    seconds: (performance.now() - started) / 1000,
  }
  const params = async (dir: string) =>
    (await openCheckpoint(dir)).tensors.reduce((s, t) => s + t.shape.reduce((a, b) => a * b, 1), 0)
  result.trainableParams = { llamaPro: (await params(pro)) - (await params(base)), fullFineTune: await params(base) }
  await writeFile(join(out, 'demo.json'), `${JSON.stringify(result, null, 2)}\n`)
  return result
}
