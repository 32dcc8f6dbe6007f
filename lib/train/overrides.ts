/**
 * Training keys that code puts on top of a YAML (a sweep's runs, the demo's stages, bench's settings), built by one
 * function typed from the key table of config.ts: a misspelt key or a value of the wrong kind is a compile error,
 * not a run that fails when the trainer reads its configuration. Keys a user gives on the command line stay
 * untyped (parseOverrides) and are checked by parseTrainConfig as before.
 */
import type { TrainOverrides } from './config.js'

export type { TrainOverrides } from './config.js'

/** The layers merged as `{ ...a, ...b }` does (later ones win), with undefined values left out. */
export function trainOverrides(...layers: readonly TrainOverrides[]): TrainOverrides {
  const out: Record<string, unknown> = {}
  for (const layer of layers) {
    for (const [key, value] of Object.entries(layer)) if (value !== undefined) out[key] = value
  }
  return out as TrainOverrides
}
