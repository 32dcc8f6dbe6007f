/**
 * config.json after block expansion. Beyond `num_hidden_layers`, per-layer settings must follow the layers
 * they describe (LLaMA-Factory's llama_pro.py leaves them stale, which makes the config invalid):
 * per-layer lists (`layer_types`, and any other `*_layers` list with one entry per layer) get the source
 * layer's entry copied in after it, and Qwen2's `max_window_layers` threshold moves with the layer it named.
 */

/** New index of original layer `i` when blocks are inserted after each of `insertAfter` (ascending). */
export function newIndexOfOriginal(i: number, insertAfter: readonly number[]): number {
  return i + insertAfter.filter((p) => p < i).length
}

export function expandedRawConfig(
  raw: Readonly<Record<string, unknown>>,
  numLayers: number,
  insertAfter: readonly number[],
): Record<string, unknown> {
  const out: Record<string, unknown> = { ...raw, num_hidden_layers: numLayers + insertAfter.length }
  for (const [key, value] of Object.entries(raw)) {
    const perLayer = key === 'layer_types' || key.endsWith('_layers')
    if (!perLayer || !Array.isArray(value) || value.length !== numLayers) continue
    const list: unknown[] = []
    value.forEach((entry, i) => {
      list.push(entry)
      if (insertAfter.includes(i)) list.push(entry)
    })
    out[key] = list
  }
  const threshold = raw.max_window_layers
  if (typeof threshold === 'number' && Number.isInteger(threshold) && threshold >= 0 && threshold <= numLayers) {
    out.max_window_layers =
      threshold === numLayers ? numLayers + insertAfter.length : newIndexOfOriginal(threshold, insertAfter)
  }
  return out
}
