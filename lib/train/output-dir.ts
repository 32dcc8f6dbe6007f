/**
 * output_dir of a training run. overwrite_output_dir lets a run replace what an earlier run left there, but it
 * must never cost the user their inputs: an output_dir that holds the model, the dataset or the tokenizer being
 * used is refused, and only the files a training run writes are removed, never anything else found there.
 */
import { existsSync } from 'node:fs'
import { readdir, realpath, rm } from 'node:fs/promises'
import { join, relative, resolve, sep } from 'node:path'
import { CONFIG_FILE, INDEX_FILE } from '../checkpoint/checkpoint.js'
import { SIDE_FILES } from '../checkpoint/side-files.js'
import { TrainingError } from './errors.js'

/** What a training run writes into output_dir (see trainer.ts, checkpoints.ts, delta.ts, loss-plot.ts). */
const RUN_OUTPUT = [
  /^checkpoint-\d+$/,
  /^\.final-/,
  /^delta$/,
  /^trainer_log\.jsonl$/,
  /^trainer_state\.json$/,
  /^(all|interrupted|eval)_results\.json$/,
  /^running_log\.txt$/,
  /^training_args\.yaml$/,
  /^llamapro_run\.json$/,
  /^runs$/, // TensorBoard's default logging_dir (report_to: tensorboard)
  /^training_loss\.(svg|png)$/,
  /\.safetensors$/,
  /^adapter_config\.json$/, // finetuning_type: lora (the adapter's weights are a .safetensors)
]
const RUN_OUTPUT_FILES = new Set<string>([CONFIG_FILE, INDEX_FILE, ...SIDE_FILES])

export function isRunOutput(name: string): boolean {
  return RUN_OUTPUT_FILES.has(name) || RUN_OUTPUT.some((pattern) => pattern.test(name))
}

async function canonical(path: string): Promise<string> {
  try {
    return await realpath(path)
  } catch {
    return resolve(path)
  }
}

function isInside(child: string, parent: string): boolean {
  const rel = relative(parent, child)
  return rel === '' || (!rel.startsWith(`..${sep}`) && rel !== '..' && !rel.startsWith(sep) && !/^[a-zA-Z]:/.test(rel))
}

/**
 * Refuses an output_dir that is, or contains, one of the run's inputs. Symbolic links are followed, so a link
 * to the model folder counts as the model folder.
 */
export async function checkOutputDirSeparate(
  outputDir: string,
  inputs: { what: string; path: string }[],
): Promise<void> {
  const out = await canonical(outputDir)
  for (const input of inputs) {
    const path = await canonical(input.path)
    if (isInside(path, out)) {
      throw new TrainingError(
        'LLAMAPRO_TRAIN_CONFIG',
        `output_dir ${outputDir} ${path === out ? 'is' : 'contains'} the ${input.what} (${input.path}); ` +
          'a run writes and, with overwrite_output_dir, clears its output_dir: choose a folder of its own (e.g. ' +
          'saves/<run name>)',
      )
    }
  }
}

/** Removes what an earlier run wrote into `dir` and returns the names removed; other files stay. */
export async function clearRunOutputs(dir: string): Promise<string[]> {
  if (!existsSync(dir)) return []
  const removed: string[] = []
  for (const entry of await readdir(dir)) {
    if (!isRunOutput(entry)) continue
    await rm(join(dir, entry), { recursive: true, force: true })
    removed.push(entry)
  }
  return removed
}
