/**
 * How far one model's gradients are from a reference model's, tensor by tensor: max |a - b| over the reference
 * tensor's max |b| (float32 rounding of two summation orders is ~1e-6 of it). For tests that compare two native
 * paths of the same step (row plan, oneDNN products, fused attention).
 */
import type { LlamaModel } from '../../lib/index.js'

export async function gradientGap(model: LlamaModel, reference: LlamaModel, names: string[]) {
  const pairs = names.map((n) => [`grad:${n}`, `grad:${n}`] as [string, string])
  const differences = await model.native.maxAbsDifference(reference.native, pairs)
  const scales = await reference.native.tensorMaxAbs(pairs.map((p) => p[0]))
  const worst = names
    .map((name, i) => ({ name, relative: differences[i]! / Math.max(scales[i]!, 1e-30) }))
    .sort((a, b) => b.relative - a.relative)[0]!
  return { worst, scales }
}
