/**
 * Which TensorBoard tags a trainer_log.jsonl line becomes: the tags transformers' TensorBoardCallback writes for the
 * same run, so llamapro's runs and transformers/LLaMA-Factory runs overlay in one TensorBoard. The event's step is
 * the line's `current_steps` (transformers' global step).
 *
 * transformers' rule (`rewrite_logs`): every numeric log key becomes `train/<key>`, except `eval_<rest>`, which
 * becomes `eval/<rest>`. LLaMA-Factory's log renames transformers' `learning_rate` to `lr`; it is mapped back.
 *
 *   training line (it has `loss`)                evaluation line (`eval_loss` or `eval_<name>_loss`, no `loss`)
 *   loss              -> train/loss              eval_loss          -> eval/loss
 *   lr                -> train/learning_rate     eval_<name>_loss   -> eval/<name>_loss
 *   grad_norm         -> train/grad_norm         eval_<anything>    -> eval/<anything>
 *   epoch             -> train/epoch
 *   throughput, tokens_per_second, total_tokens, allreduce_bytes, ... (any other number) -> train/<key>
 *   layer_grad_norms {"3": n, "lm_head": m}  -> grad_norm/layer_3, grad_norm/lm_head
 *
 * Not written: current_steps and total_steps (the step itself), percentage and elapsed_seconds (progress, not a
 * metric), strings (elapsed_time, remaining_time), nulls (a non-finite value JSON could not hold). An evaluation
 * line contributes only its eval_* keys: its epoch repeats the training line of the same step.
 */

const NOT_METRICS = new Set(['current_steps', 'total_steps', 'percentage', 'elapsed_seconds'])
const RENAMED: ReadonlyMap<string, string> = new Map([['lr', 'learning_rate']])
const EVAL_PREFIX = 'eval_'

/** The scalars TensorBoard gets for one trainer_log.jsonl line (a parsed JSON object), tag -> value. */
export function tensorboardScalars(record: object): Record<string, number> {
  const line = record as Readonly<Record<string, unknown>>
  const keys = Object.keys(line)
  const evaluation = !('loss' in line) && keys.some((k) => k.startsWith(EVAL_PREFIX))
  const scalars: Record<string, number> = {}
  for (const key of keys) {
    const value = line[key]
    if (key === 'layer_grad_norms') {
      addLayerNorms(scalars, value)
    } else if (typeof value !== 'number') {
    } else if (key.startsWith(EVAL_PREFIX)) {
      scalars[cachedTag(evalTags, key, evalTag)] = value
    } else if (!evaluation && !NOT_METRICS.has(key)) {
      scalars[cachedTag(trainTags, key, trainTag)] = value
    }
  }
  return scalars
}

function addLayerNorms(scalars: Record<string, number>, norms: unknown): void {
  if (typeof norms !== 'object' || norms === null) return
  for (const name in norms) {
    const norm = (norms as Record<string, unknown>)[name]
    if (typeof norm === 'number') scalars[cachedTag(layerTags, name, layerTag)] = norm
  }
}

const trainTag = (key: string) => `train/${RENAMED.get(key) ?? key}`
const evalTag = (key: string) => `eval/${key.slice(EVAL_PREFIX.length)}`
const layerTag = (name: string) => (/^\d+$/.test(name) ? `grad_norm/layer_${name}` : `grad_norm/${name}`)

// A run logs the same keys every step: building each tag once keeps the per-step cost to lookups, and hands the
// writer the same string objects every time (their hashes are cached, so its tag -> UTF-8 lookups are cheap too).
const trainTags = new Map<string, string>()
const evalTags = new Map<string, string>()
const layerTags = new Map<string, string>()
const MAX_CACHED_TAGS = 10_000

function cachedTag(cache: Map<string, string>, key: string, build: (key: string) => string): string {
  let tag = cache.get(key)
  if (tag === undefined) {
    tag = build(key)
    if (cache.size < MAX_CACHED_TAGS) cache.set(key, tag)
  }
  return tag
}
