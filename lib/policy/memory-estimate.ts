/**
 * Memory a freeze-tuning step needs, split into weights, gradients, optimizer state and activations, for the
 * implementation llamapro runs. Activations are the tensors autograd saves for backward; what a frozen op saves
 * depends on which of its inputs need gradients, so the estimate walks each layer's ops in order and tracks
 * whether the hidden state requires grad. Below the lowest trainable parameter nothing is saved at all: that is
 * where freeze tuning saves its memory.
 *
 * With activation checkpointing (the default, as in LLaMA-Factory) each decoder layer that holds a trainable
 * parameter keeps only its input; in backward it is recomputed, so one such layer's activations are alive at a
 * time, next to the gradients produced so far. Frozen layers above the lowest trainable one keep what their input
 * gradient needs, as in LLaMA-Factory, unless `checkpointFrozenLayers` recomputes them too.
 *
 * The kernels decide what is saved (native/fused_ops.cc, causal_attention.cc, model_state.cc): float32 on the CPU
 * runs the fused SwiGLU (saves gate and up, not silu(gate) too) and the fused RMSNorm (saves its input and one
 * float32 per row); the fused causal attention saves q, k, a contiguous v and P [B, H, T, T] — what the composite
 * form saves too (baddbmm's q and k, softmax's and bmm's P, bmm's copy of v), so `fusedAttention` changes no total;
 * the row plan (kernel option rowPlan) computes the decoder only on the rows the loss reads when a batch has padding
 * (sequenceLengths), and the last layer only on the counted rows, while attention still sees the whole grid.
 */
import type { ModelConfig } from '../checkpoint/config.js'
import { type ModelDtype, modelDtypeSize } from '../checkpoint/dtypes.js'
import { layerPrefix } from '../checkpoint/parameters.js'
import { DEFAULT_KERNEL_OPTIONS, type KernelOptions } from '../native/kernel-options.js'

export interface MemoryEstimateInput {
  config: ModelConfig
  parameters: readonly { name: string; numel: number }[]
  trainable: ReadonlySet<string>
  batch: number
  seq: number
  /** Dtype of activations and frozen weights. */
  computeDtype: ModelDtype
  /** Dtype of trainable weights, their gradients and optimizer state (float32 master weights by default). */
  masterDtype?: ModelDtype
  /**
   * Which attention kernel runs: 'grouped' (LibTorch 1.x: explicit softmax over [B, H, T, T]) or 'flash'
   * (LibTorch 2.x scaled_dot_product_attention, which keeps only a log-sum-exp per row).
   */
  attention?: 'grouped' | 'flash'
  /** 'cpu' (default) or 'cuda': float32 on the CPU uses llamapro's fused RMSNorm, which keeps less. */
  device?: 'cpu' | 'cuda'
  /** Activation checkpointing of the decoder layers (default true, as the model and LLaMA-Factory default). */
  gradientCheckpointing?: boolean
  /** With checkpointing, also recompute the frozen layers backward passes through (default false). */
  checkpointFrozenLayers?: boolean
  /** Ranks of a data-parallel run (default 1): the estimate is per rank. */
  nproc?: number
  /** 1: ZeRO stage 1, AdamW state sharded over the ranks (default 0). */
  zeroStage?: 0 | 1
  /** Gradient bucket size of the collectives (ddp_bucket_cap_mb; default 25 MiB). */
  bucketBytes?: number
  /** The kernel options the step runs with (default: the defaults; `llamapro plan` passes the ones in effect). */
  kernels?: Pick<KernelOptions, 'rowPlan' | 'fusedAttention'>
  /**
   * Each sequence's tokens before its right padding (default: every row full, `seq`); every token is labelled.
   * With the row plan, padding is not computed.
   */
  sequenceLengths?: readonly number[]
}

/** Rows of a step, as ShiftedCrossEntropy (native/model_state.cc) plans them. */
interface StepRows {
  /** Rows every decoder layer computes (the packed rows, or the whole grid). */
  decoder: number
  /** Rows the last layer's output holds (the counted ones where the plan takes a subset). */
  last: number
  /** Counted predictions: the rows of the output head and the loss. */
  counted: number
}

export function planStepRows(
  batch: number,
  seq: number,
  lengths: readonly number[] | undefined,
  rowPlan: boolean,
): StepRows {
  const grid = batch * seq
  // A sequence of length L predicts positions 1..L-1 from positions 0..L-2: L - 1 rows are read by the loss.
  let counted = 0
  for (let b = 0; b < batch; b++) counted += Math.max(0, Math.min(lengths?.[b] ?? seq, seq) - 1)
  const pack = counted > 0 && (grid - counted) * 32 >= grid
  const rowsIn = pack ? counted : grid
  const subset = counted > 0 && counted * 16 <= rowsIn * 15
  if (!rowPlan || !(pack || subset)) return { decoder: grid, last: grid, counted }
  return { decoder: rowsIn, last: subset ? counted : rowsIn, counted }
}

export interface MemoryEstimate {
  /** All parameters: frozen ones in the compute dtype, trainable ones in the master dtype. */
  weights: number
  /** One gradient per trainable parameter, in the master dtype. Frozen parameters have none. */
  gradients: number
  /** AdamW's exp_avg and exp_avg_sq per trainable parameter; with ZeRO stage 1, this rank's 1/nproc share. */
  optimizer: number
  /**
   * Flat gradient buckets of the collectives on each rank (0 in one process): the all-reduce keeps two buckets
   * in flight; ZeRO-1 packs one bucket, keeps its reduced shard, and all-gathers into one bucket again.
   */
  communication: number
  nproc: number
  zeroStage: 0 | 1
  /** Tensors saved for backward at the end of the forward pass, plus the loss's logits buffers. */
  activations: number
  /** With checkpointing: the activations of the largest recomputed layer, alive while it back-propagates. */
  recomputed: number
  gradientCheckpointing: boolean
  checkpointFrozenLayers: boolean
  /** The expected high-water mark of one training step (optimizer state already allocated). */
  peak: number
  assumptions: string
}

export function estimateTrainingMemory(input: MemoryEstimateInput): MemoryEstimate {
  const { config, parameters, trainable, batch, seq } = input
  const c = modelDtypeSize(input.computeDtype)
  const masterDtype = input.masterDtype ?? 'float32'
  const m = modelDtypeSize(masterDtype)
  const attention = input.attention ?? 'grouped'

  let weights = 0
  let trainableNumel = 0
  let largestTrainable = 0
  for (const p of parameters) {
    if (trainable.has(p.name)) {
      weights += p.numel * m
      trainableNumel += p.numel
      largestTrainable = Math.max(largestTrainable, p.numel)
    } else {
      weights += p.numel * c
    }
  }
  const gradients = trainableNumel * m
  const nproc = Math.max(1, Math.floor(input.nproc ?? 1))
  const zeroStage = nproc > 1 ? (input.zeroStage ?? 0) : 0
  // ZeRO-1 pads each bucket to nproc equal chunks: at most nproc - 1 elements more per bucket, not counted.
  const optimizer = zeroStage === 1 ? 2 * Math.ceil(trainableNumel / nproc) * m : 2 * trainableNumel * m
  const bucket = Math.min(gradients, input.bucketBytes ?? 25 * 1024 * 1024)
  const communication = nproc === 1 ? 0 : zeroStage === 1 ? bucket + Math.ceil(bucket / nproc) : 2 * bucket

  const trains = (prefix: string) => parameters.some((p) => p.name.startsWith(prefix) && trainable.has(p.name))
  const kernels = { ...DEFAULT_KERNEL_OPTIONS, ...input.kernels }
  const rows = planStepRows(batch, seq, input.sequenceLengths, kernels.rowPlan)
  const N = batch * seq // the grid attention works on
  const R = rows.decoder
  const h = config.hiddenSize
  const f = config.intermediateSize
  const q = config.numHeads * config.headDim
  const kv = config.numKvHeads * config.headDim
  const up = c === 4 ? 0 : 4 // RMSNorm upcasts to float32: a separate copy unless already float32

  const checkpointing = input.gradientCheckpointing ?? true
  const checkpointFrozen = checkpointing && (input.checkpointFrozenLayers ?? false)
  const gradBytes = (prefix: string) =>
    parameters.reduce((sum, p) => sum + (p.name.startsWith(prefix) && trainable.has(p.name) ? p.numel * m : 0), 0)
  let saved = 0
  let g = trains('model.embed_tokens.')
  // Per recorded layer: what it saves, what it keeps until backward (all of that, or its input when it is
  // checkpointed), its gradients, and whether it is recomputed.
  const recorded: { saved: number; kept: number; gradients: number; checkpointed: boolean }[] = []
  const fusedNorms = (input.device ?? 'cpu') === 'cpu' && c === 4
  // RMSNorm. Fused (float32 on the CPU): keeps its input whenever anything needs a gradient. Composite: pow keeps
  // its float32 input when the input needs a gradient; weight * normed keeps normed for the weight's gradient.
  const rmsNorm = (n: number, inputGrad: boolean, weightTrains: boolean) => {
    if (fusedNorms) {
      if (inputGrad || weightTrains) saved += n * h * c + n * 4
    } else {
      if (inputGrad) saved += n * h * (up || c)
      if (weightTrains) saved += n * h * c
    }
    return inputGrad || weightTrains
  }
  // SwiGLU: the fused node (float32 on the CPU) saves gate and up; the composite form also silu(gate).
  const swigluSaves = fusedNorms ? 2 : 3
  for (let i = 0; i < config.numLayers; i++) {
    const p = layerPrefix(i)
    const before = saved
    const Q = i === config.numLayers - 1 ? rows.last : R // rows past attention: the last layer may keep fewer
    const g1 = rmsNorm(R, g, trains(`${p}input_layernorm.`))
    const qTrains = trains(`${p}self_attn.q_proj.`)
    const kvTrains = trains(`${p}self_attn.k_proj.`) || trains(`${p}self_attn.v_proj.`)
    // The projections' input, for their weight gradients: shared, unless q_proj reads a subset of the rows.
    if (Q < R) saved += (qTrains ? Q * h * c : 0) + (kvTrains ? R * h * c : 0)
    else if (qTrains || kvTrains) saved += R * h * c
    const qkv = qTrains || kvTrains
    const gq = g1 || qkv
    if (gq) {
      saved += N * (q + 2 * kv) * c // q after rotary, k, v as the attention kernel keeps them
      saved +=
        attention === 'grouped'
          ? batch * config.numHeads * seq * seq * (c + (c === 4 ? 0 : 4))
          : N * q * c + batch * config.numHeads * seq * 4
    }
    const oTrains = trains(`${p}self_attn.o_proj.`)
    if (oTrains) saved += Q * q * c
    const gh = g || gq || oTrains
    const g2 = rmsNorm(Q, gh, trains(`${p}post_attention_layernorm.`))
    const gateUp = trains(`${p}mlp.gate_proj.`) || trains(`${p}mlp.up_proj.`)
    if (gateUp) saved += Q * h * c
    const gm = g2 || gateUp
    if (gm) saved += swigluSaves * Q * f * c
    const downTrains = trains(`${p}mlp.down_proj.`)
    if (downTrains) saved += Q * f * c
    g = gh || gm || downTrains
    if (saved > before) {
      const gradients = gradBytes(p)
      const checkpointed = checkpointing && (gradients > 0 || checkpointFrozen)
      if (checkpointed) {
        recorded.push({ saved: saved - before, kept: R * h * c, gradients, checkpointed })
        saved = before + R * h * c // the layer's input, kept for the recomputation
      } else {
        recorded.push({ saved: saved - before, kept: saved - before, gradients, checkpointed })
      }
    }
  }
  const gFinal = rmsNorm(rows.last, g, trains('model.norm.'))
  const headTrains = config.tieWordEmbeddings ? trains('model.embed_tokens.') : trains('lm_head.')
  if (headTrains) saved += rows.counted * h * c // the counted rows, as the output head reads them
  // The loss: logits for the counted positions (plus a float32 copy when computing in half precision). log_softmax
  // keeps its float32 output; the first backward steps add the gradients of the log-probabilities and of the
  // logits, so three [counted, vocab] float32 buffers are alive at once.
  const targets = rows.counted * config.vocabSize
  const lossBuffers = gFinal || headTrains ? targets * (3 * 4 + (c === 4 ? 0 : c)) : targets * (4 + (c === 4 ? 0 : c))
  const activations = saved + lossBuffers
  // Peak: at the start of backward every saved tensor and the loss buffers are alive; later, gradients grow as
  // activations are freed; at the optimizer step AdamW's temporaries for the largest tensor come on top.
  const forwardBackward = weights + optimizer + activations
  const step = weights + gradients + optimizer + Math.max(communication, 2 * largestTrainable * m)
  // With checkpointing, backward meets a recomputed layer i (top down) with what the layers below it keep, the
  // gradients of everything above it done, its own activations recomputed and its gradients being produced,
  // and the incoming and outgoing gradient of the hidden state.
  let recompute = 0
  let recomputed = 0
  if (recorded.some((r) => r.checkpointed)) {
    const layerGradients = recorded.reduce((sum, r) => sum + r.gradients, 0)
    const embedGradients = config.tieWordEmbeddings ? 0 : gradBytes('model.embed_tokens.')
    let gradientsDone = gradients - layerGradients - embedGradients
    let keptUpTo = recorded.reduce((sum, r) => sum + r.kept, 0)
    for (let k = recorded.length - 1; k >= 0; k--) {
      const layer = recorded[k]!
      gradientsDone += layer.gradients
      if (layer.checkpointed) {
        recomputed = Math.max(recomputed, layer.saved)
        recompute = Math.max(recompute, weights + optimizer + gradientsDone + keptUpTo + layer.saved + 2 * R * h * c)
      }
      keptUpTo -= layer.kept
    }
  }
  const peak = Math.max(forwardBackward, step, recompute)
  return {
    weights,
    gradients,
    optimizer,
    communication,
    nproc,
    zeroStage,
    activations,
    recomputed,
    gradientCheckpointing: checkpointing,
    checkpointFrozenLayers: checkpointFrozen,
    peak,
    assumptions:
      `batch ${batch} x ${seq} tokens, ${input.computeDtype} activations, ${masterDtype} master weights, AdamW, ` +
      `${attention} attention, ${input.device ?? 'cpu'}, activation checkpointing ` +
      `${checkpointing ? (checkpointFrozen ? 'on, frozen layers too' : 'on') : 'off'}` +
      `, row plan ${kernels.rowPlan ? 'on' : 'off'}${R < N ? ` (${R} of ${N} rows computed)` : ''}` +
      (nproc > 1 ? `, per rank of ${nproc}${zeroStage === 1 ? ', ZeRO stage 1 (AdamW state sharded)' : ''}` : ''),
  }
}
