/**
 * A Hugging Face model folder: config.json plus model.safetensors, or sharded model-0000i-of-0000n.safetensors
 * files with model.safetensors.index.json. Opening one reads and validates every header and checks the tensors
 * against the config: missing, misshaped and unexpected tensors are errors naming the file and the tensor.
 */
import { readFile, stat } from 'node:fs/promises'
import { existsSync } from 'node:fs'
import { isAbsolute, join, relative, resolve, sep } from 'node:path'
import { LlamaproError } from '../errors.js'
import { type ModelConfig, parseModelConfig } from './config.js'
import { type ModelDtype, type SafetensorsDtype, fromSafetensorsDtype } from './dtypes.js'
import { IGNORED_TENSOR, expectedParameters } from './parameters.js'
import { type SafetensorsFile, readSafetensorsHeader } from './safetensors.js'
import { parseStrictJson } from './strict-json.js'

export const CONFIG_FILE = 'config.json'
export const SINGLE_WEIGHTS_FILE = 'model.safetensors'
export const INDEX_FILE = 'model.safetensors.index.json'

/** Where one tensor's bytes are: enough for native code to pread them, nothing more. */
export interface TensorLocation {
  name: string
  file: string
  dtype: SafetensorsDtype
  shape: number[]
  /** Absolute byte offset in `file`. */
  offset: number
  nbytes: number
}

export interface Checkpoint {
  dir: string
  rawConfig: Record<string, unknown>
  config: ModelConfig
  files: SafetensorsFile[]
  /** The model's tensors in state_dict order (ignored extras such as rotary inv_freq left out). */
  tensors: TensorLocation[]
  sharded: boolean
  /** The dtype most tensor bytes are stored in. */
  dtype: ModelDtype
}

export class CheckpointError extends LlamaproError {
  constructor(message: string) {
    super('LLAMAPRO_CHECKPOINT', message)
    this.name = 'CheckpointError'
  }
}

async function readJsonFile(path: string, what: string): Promise<unknown> {
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code
    throw new CheckpointError(
      code === 'ENOENT' ? `${path}: ${what} not found` : `${path}: cannot read ${what} (${code})`,
    )
  }
  try {
    return parseStrictJson(text)
  } catch (error) {
    throw new CheckpointError(`${path}: ${what} is not valid JSON (${(error as Error).message})`)
  }
}

/** Reads and validates config.json alone (no weights). */
export async function readModelConfig(dir: string): Promise<{ raw: Record<string, unknown>; config: ModelConfig }> {
  const path = join(dir, CONFIG_FILE)
  const raw = (await readJsonFile(path, 'config.json')) as Record<string, unknown>
  return { raw, config: parseModelConfig(raw, path) }
}

/** A shard name from an index must stay inside the model folder. */
function shardPath(dir: string, indexPath: string, file: unknown, tensor: string): string {
  if (typeof file !== 'string' || file.length === 0) {
    throw new CheckpointError(`${indexPath}: weight_map["${tensor}"] must be a file name, got ${JSON.stringify(file)}`)
  }
  const full = resolve(dir, file)
  const rel = relative(resolve(dir), full)
  if (isAbsolute(file) || rel.startsWith('..') || rel.includes(`..${sep}`) || rel === '') {
    throw new CheckpointError(`${indexPath}: weight_map["${tensor}"] points outside the model folder (${file})`)
  }
  return full
}

async function readIndex(dir: string, indexPath: string): Promise<Map<string, string>> {
  const index = await readJsonFile(indexPath, 'the shard index')
  const weightMap = (index as { weight_map?: unknown })?.weight_map
  if (typeof weightMap !== 'object' || weightMap === null || Array.isArray(weightMap)) {
    throw new CheckpointError(`${indexPath}: missing "weight_map" (an object mapping tensor names to shard files)`)
  }
  const out = new Map<string, string>()
  for (const [name, file] of Object.entries(weightMap)) out.set(name, shardPath(dir, indexPath, file, name))
  return out
}

export interface OpenCheckpointOptions {
  /** Accept tensors the config does not imply (default false: they are an error). */
  allowUnexpected?: boolean
}

export async function openCheckpoint(dir: string, options: OpenCheckpointOptions = {}): Promise<Checkpoint> {
  const folder = resolve(dir)
  let info
  try {
    info = await stat(folder)
  } catch {
    throw new CheckpointError(`model folder ${dir} not found`)
  }
  if (!info.isDirectory())
    throw new CheckpointError(`${dir} is not a folder (a model is a folder with config.json and *.safetensors)`)
  const { raw, config } = await readModelConfig(folder)

  const indexPath = join(folder, INDEX_FILE)
  const singlePath = join(folder, SINGLE_WEIGHTS_FILE)
  const files: SafetensorsFile[] = []
  const located = new Map<string, TensorLocation>()
  const sharded = existsSync(indexPath)

  const addFile = (file: SafetensorsFile) => {
    files.push(file)
    for (const t of file.tensors) {
      const previous = located.get(t.name)
      if (previous)
        throw new CheckpointError(`tensor "${t.name}" is stored twice: in ${previous.file} and in ${file.path}`)
      located.set(t.name, {
        name: t.name,
        file: file.path,
        dtype: t.dtype,
        shape: t.shape,
        offset: file.dataStart + t.begin,
        nbytes: t.end - t.begin,
      })
    }
  }

  if (sharded) {
    const weightMap = await readIndex(folder, indexPath)
    const shardFiles = [...new Set(weightMap.values())]
    for (const path of shardFiles) {
      if (!existsSync(path)) {
        const name = [...weightMap].find(([, f]) => f === path)![0]
        throw new CheckpointError(`${indexPath}: shard ${relative(folder, path)} (holding "${name}") does not exist`)
      }
      addFile(await readSafetensorsHeader(path))
    }
    for (const [name, path] of weightMap) {
      const where = located.get(name)
      if (!where)
        throw new CheckpointError(
          `${indexPath}: tensor "${name}" is listed in ${relative(folder, path)} but that file does not hold it`,
        )
      if (where.file !== path)
        throw new CheckpointError(
          `${indexPath}: tensor "${name}" is listed in ${relative(folder, path)} but stored in ` +
            `${relative(folder, where.file)}`,
        )
    }
    for (const name of located.keys()) {
      if (!weightMap.has(name))
        throw new CheckpointError(
          `${indexPath}: tensor "${name}" in ${relative(folder, located.get(name)!.file)} is missing from weight_map`,
        )
    }
  } else if (existsSync(singlePath)) {
    addFile(await readSafetensorsHeader(singlePath))
  } else if (
    existsSync(join(folder, 'pytorch_model.bin')) ||
    existsSync(join(folder, 'pytorch_model.bin.index.json'))
  ) {
    throw new CheckpointError(
      `${dir} holds pytorch_model.bin weights; llamapro reads safetensors only. Convert once in Python: ` +
        'AutoModelForCausalLM.from_pretrained(dir).save_pretrained(dir, safe_serialization=True)',
    )
  } else {
    throw new CheckpointError(`${dir}: no ${SINGLE_WEIGHTS_FILE} or ${INDEX_FILE} found`)
  }

  const tensors: TensorLocation[] = []
  const bytesByDtype = new Map<ModelDtype, number>()
  const expected = expectedParameters(config)
  const expectedNames = new Set(expected.map((p) => p.name))
  for (const p of expected) {
    const where = located.get(p.name)
    if (!where) {
      throw new CheckpointError(
        `${dir}: tensor "${p.name}" is missing (config.json implies shape [${p.shape.join(', ')}])`,
      )
    }
    if (where.shape.length !== p.shape.length || where.shape.some((d, i) => d !== p.shape[i])) {
      throw new CheckpointError(
        `${where.file}: tensor "${p.name}" has shape [${where.shape.join(', ')}] but config.json implies ` +
          `[${p.shape.join(', ')}]`,
      )
    }
    const dtype = fromSafetensorsDtype(where.dtype)
    if (!dtype)
      throw new CheckpointError(
        `${where.file}: tensor "${p.name}" is ${where.dtype}; model weights must be F32, BF16 or F16`,
      )
    bytesByDtype.set(dtype, (bytesByDtype.get(dtype) ?? 0) + where.nbytes)
    tensors.push(where)
  }
  if (!options.allowUnexpected) {
    for (const [name, where] of located) {
      if (expectedNames.has(name) || IGNORED_TENSOR.test(name)) continue
      if (name === 'lm_head.weight' && config.tieWordEmbeddings) continue // tied: the embedding is the head
      throw new CheckpointError(
        `${where.file}: unexpected tensor "${name}" that a ${config.modelType} model with this config.json does not ` +
          `have`,
      )
    }
  }
  const dtype = [...bytesByDtype].sort((a, b) => b[1] - a[1])[0]?.[0] ?? 'float32'
  return { dir: folder, rawConfig: raw as Record<string, unknown>, config, files, tensors, sharded, dtype }
}
