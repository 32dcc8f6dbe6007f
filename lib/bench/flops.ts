/**
 * Analytic FLOPs per token of one training step under a freeze strategy. Each matmul with a weight of P
 * parameters costs 2P forward, 2P more for its input's gradient when that input needs one, and 2P more for its
 * weight's gradient when the weight trains. Attention's two matmuls (QK^T and AV, over the whole sequence, as
 * the kernels compute them) cost 4 * T * H * D forward and twice that backward when Q, K, V need gradients.
 * Element-wise work (norms, activations, softmax) is left out, as is usual. Full fine-tuning gives about 6N.
 * A LoRA adapter of rank r on a frozen [out, in] weight adds 2r(in + out) forward, as much for A's and B's
 * gradients, 2r·out for the gradient into B's input, and 2r·in more when the layer's input needs a gradient.
 */
import type { ModelConfig } from '../checkpoint/config.js'
import { layerPrefix } from '../checkpoint/parameters.js'

export interface FlopCount {
  forward: number
  activationGradients: number
  weightGradients: number
  total: number
}

export function flopsPerToken(
  config: ModelConfig,
  trainable: ReadonlySet<string>,
  seq: number,
  lora?: { rank: number; targets: ReadonlySet<string> },
): FlopCount {
  const h = config.hiddenSize
  const f = config.intermediateSize
  const q = config.numHeads * config.headDim
  const kv = config.numKvHeads * config.headDim
  const trains = (name: string) => trainable.has(name)
  let forward = 0
  let activationGradients = 0
  let weightGradients = 0
  // A matmul whose input needs a gradient (`inputGrad`) and whose weight may train; returns whether its output does.
  const matmul = (params: number, inputGrad: boolean, weight: string, shape?: [number, number]): boolean => {
    forward += 2 * params
    if (inputGrad) activationGradients += 2 * params
    const weightTrains = trains(weight)
    if (weightTrains) weightGradients += 2 * params
    const adapted = lora !== undefined && shape !== undefined && lora.targets.has(weight.slice(0, -'.weight'.length))
    if (adapted) {
      const [out, inFeatures] = shape
      forward += 2 * lora.rank * (inFeatures + out)
      weightGradients += 2 * lora.rank * (inFeatures + out)
      activationGradients += 2 * lora.rank * out + (inputGrad ? 2 * lora.rank * inFeatures : 0)
    }
    return inputGrad || weightTrains || adapted
  }
  let g = trains('model.embed_tokens.weight')
  for (let i = 0; i < config.numLayers; i++) {
    const p = layerPrefix(i)
    const g1 = g || trains(`${p}input_layernorm.weight`)
    const gq = [
      matmul(h * q, g1, `${p}self_attn.q_proj.weight`, [q, h]),
      matmul(h * kv, g1, `${p}self_attn.k_proj.weight`, [kv, h]),
      matmul(h * kv, g1, `${p}self_attn.v_proj.weight`, [kv, h]),
    ].some(Boolean)
    forward += 4 * seq * q
    if (gq) activationGradients += 8 * seq * q
    const ga = matmul(q * h, gq, `${p}self_attn.o_proj.weight`, [h, q])
    const gh = g || ga
    const g2 = gh || trains(`${p}post_attention_layernorm.weight`)
    const gm = [
      matmul(h * f, g2, `${p}mlp.gate_proj.weight`, [f, h]),
      matmul(h * f, g2, `${p}mlp.up_proj.weight`, [f, h]),
    ].some(Boolean)
    const gd = matmul(f * h, gm, `${p}mlp.down_proj.weight`, [h, f])
    g = gh || gd
  }
  const gFinal = g || trains('model.norm.weight')
  matmul(h * config.vocabSize, gFinal, config.tieWordEmbeddings ? 'model.embed_tokens.weight' : 'lm_head.weight')
  return { forward, activationGradients, weightGradients, total: forward + activationGradients + weightGradients }
}

/** Dense bf16 peak of the cards llamapro is measured on, for MFU. */
export function peakFlops(deviceName: string | null): number | null {
  if (!deviceName) return null
  if (/H200|H100/.test(deviceName)) return /PCIe/i.test(deviceName) ? 756e12 : 989e12
  if (/A100/.test(deviceName)) return 312e12
  return null
}
