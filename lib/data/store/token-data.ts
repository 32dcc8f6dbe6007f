/**
 * Where a run's token store lives and whether it must be built:
 * - `tokenized_path` (LLaMA-Factory's key): when that folder holds a store it is loaded and the data files are not
 *   read at all (they may be gone), whatever the data keys say; when it does not exist the store is built there.
 * - otherwise a cache folder, `$LLAMAPRO_TOKEN_CACHE` or `~/.cache/llamapro/tokens`, one store per key: a hash of
 *   everything that changes the tokens (each data file's path, size and mtime, the tokenizer files' contents,
 *   stage, template, cutoff_len, packing, max_samples, mixing, ...). It is model-independent and outlives
 *   output_dir (which overwrite_output_dir clears), so any run over the same data and tokenizer starts at once.
 * `overwrite_cache: true` rebuilds either.
 */
import type { ProgressStream } from '../../util/progress.js'
import { createHash } from 'node:crypto'
import { existsSync, readFileSync } from 'node:fs'
import { mkdir, mkdtemp, readFile, readdir, rename, rm, writeFile } from 'node:fs/promises'
import { homedir } from 'node:os'
import { basename, dirname, extname, join } from 'node:path'
import { DatasetError } from '../dataset.js'
import { type DatasetSource, resolveDatasets, sourceFingerprint } from '../dataset.js'
import type { MixStrategy } from '../mix.js'
import { buildStore, defaultWorkers } from './build.js'
import type { SequenceStreamOptions } from './sequence-stream.js'
import { type EncoderSettings, tokenizerFacts } from './encode-chunk.js'
import { type TextTokenizer, loadTokenizer } from '../tokenizer.js'
import { EVAL_EACH_NAMES_FILE, EVAL_EACH_SUBDIR, EVAL_SUBDIR, STORE_VERSION, dtypeFor } from './format.js'
import { TokenStore, isStore } from './reader.js'
import { removeDeadTemporaries } from './writer.js'

export interface TokenDataOptions extends Omit<EncoderSettings, 'tokenizer'> {
  dataset: readonly string[]
  evalDataset: readonly string[]
  /** eval_on_each_dataset: one eval store per eval dataset, named as LLaMA-Factory names its metrics. */
  evalOnEachDataset?: boolean
  datasetDir: string
  baseDir: string
  maxSamples: number | null
  mixStrategy: MixStrategy
  interleaveProbs: readonly number[] | null
  seed: number
  tokenizedPath: string | null
  overwriteCache: boolean
  /** preprocessing_num_workers (null: the cores). */
  workers: number | null
  /**
   * The model's tokenizer as loadTokenizer gives it (loaded from modelDir when absent): its special tokens go to the
   * workers.
   */
  tokenizer?: TextTokenizer
  /** The tokenizer's largest id (TextTokenizer.maxId): the token dtype. */
  maxTokenId: number
  blockBos: number | null
  signal?: AbortSignal
  log?: (line: string) => void
  warn?: (line: string) => void
  progressStream?: ProgressStream
}

export interface TokenData {
  dir: string
  train: TokenStore
  eval: TokenStore | null
  /** eval_on_each_dataset: each eval dataset's store with its name (eval is then null). */
  evalEach: NamedStore[] | null
  /** True when an existing store was used (nothing was tokenized). */
  reused: boolean
}

export interface NamedStore {
  name: string
  store: TokenStore
}

/**
 * The name an eval dataset's metrics carry (eval_<name>_loss): its dataset_info.json name as LLaMA-Factory uses it;
 * a file or folder given as a path (llamapro's addition) is named by its base name without the extension.
 */
export function evalDatasetName(source: Pick<DatasetSource, 'name' | 'fromDatasetInfo'>): string {
  return source.fromDatasetInfo ? source.name : basename(source.name, extname(source.name))
}

/** The eval datasets' metric names, refused when two would log under one name. */
export function evalDatasetNames(sources: readonly Pick<DatasetSource, 'name' | 'fromDatasetInfo'>[]): string[] {
  const names = sources.map(evalDatasetName)
  const twice = names.find((name, i) => names.indexOf(name) !== i)
  if (twice !== undefined) {
    throw new DatasetError(
      `eval_on_each_dataset: two eval datasets would both log as eval_${twice}_loss (${sources
        .filter((s) => evalDatasetName(s) === twice)
        .map((s) => s.name)
        .join(', ')}); rename one, or list it under another name in dataset_info.json`,
    )
  }
  return names
}

const TOKENIZER_FILES = [
  'tokenizer.json',
  'tokenizer_config.json',
  'chat_template.jinja',
  'generation_config.json',
  'special_tokens_map.json',
]

export const tokenCacheRoot = (): string =>
  process.env.LLAMAPRO_TOKEN_CACHE ??
  join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'llamapro', 'tokens')

async function tokenizerHash(modelDir: string): Promise<string> {
  const hash = createHash('sha256')
  for (const file of TOKENIZER_FILES) {
    const path = join(modelDir, file)
    hash.update(`${file}\0`)
    if (existsSync(path)) hash.update(await readFile(path))
    hash.update('\0')
  }
  return hash.digest('hex')
}

async function describeSources(sources: readonly DatasetSource[]) {
  return Promise.all(
    sources.map(async (s) => ({
      name: s.name,
      format: s.format,
      formatting: s.formatting,
      columns: s.columns,
      tags: s.tags,
      fromDatasetInfo: s.fromDatasetInfo,
      files: await sourceFingerprint(s),
    })),
  )
}

/** The cache key's inputs: everything that changes the tokens, and nothing that does not (val_size is not). */
export async function storeInputs(
  options: TokenDataOptions,
  sources: readonly DatasetSource[],
  evalSources: readonly DatasetSource[],
): Promise<Record<string, unknown>> {
  const interleaving = sources.length > 1 && options.mixStrategy !== 'concat'
  return {
    storeVersion: STORE_VERSION,
    stage: options.stage,
    template: options.template,
    defaultSystem: options.defaultSystem,
    enableThinking: options.enableThinking,
    cutoffLen: options.cutoffLen,
    packing: options.packing,
    maxSamples: options.maxSamples,
    mixStrategy: options.mixStrategy,
    interleaveProbs: interleaving ? options.interleaveProbs : null,
    mixSeed: interleaving ? options.seed : null,
    tokenizer: await tokenizerHash(options.modelDir),
    datasets: await describeSources(sources),
    evalDatasets: await describeSources(evalSources),
    // Only when set, so that the keys of stores built before the option existed stay what they were.
    ...(options.evalOnEachDataset && evalSources.length > 0 ? { evalOnEachDataset: true } : {}),
  }
}

export const storeKey = (inputs: Record<string, unknown>): string =>
  createHash('sha256').update(JSON.stringify(inputs)).digest('hex').slice(0, 32)

/** Opens the store (and the eval store inside it, when there is one). */
function openData(dir: string, reused: boolean): TokenData {
  const train = TokenStore.open(dir)
  const evalDir = join(dir, EVAL_SUBDIR)
  return { dir, train, eval: isStore(evalDir) ? TokenStore.open(evalDir) : null, evalEach: openEvalEach(dir), reused }
}

function openEvalEach(dir: string): NamedStore[] | null {
  const names = join(dir, EVAL_EACH_SUBDIR, EVAL_EACH_NAMES_FILE)
  if (!existsSync(names)) return null
  const parsed: unknown = JSON.parse(readFileSync(names, 'utf8'))
  if (!Array.isArray(parsed) || !parsed.every((n) => typeof n === 'string'))
    throw new DatasetError(`${names} must be a JSON list of dataset names`)
  return parsed.map((name: string, i) => ({ name, store: TokenStore.open(join(dir, EVAL_EACH_SUBDIR, String(i))) }))
}

/**
 * The location of the store and whether it can be loaded as it is; reads no data file when tokenized_path holds a
 * store. Ranks that wait for another to build call this, then `openTokenData`.
 */
export async function locateTokenData(options: TokenDataOptions): Promise<{
  dir: string
  ready: boolean
  sources?: DatasetSource[]
  evalSources?: DatasetSource[]
  inputs?: Record<string, unknown>
}> {
  if (options.tokenizedPath !== null) {
    const dir = options.tokenizedPath
    if (existsSync(dir) && !options.overwriteCache) {
      if (isStore(dir)) return { dir, ready: true }
      const entries = await readdir(dir).catch(() => null)
      if (entries === null) throw new DatasetError(`tokenized_path ${dir} exists and is not a folder`)
      if (entries.length > 0) {
        throw new DatasetError(
          `tokenized_path ${dir} is not empty and holds no llamapro token store (no manifest.json): point ` +
            `tokenized_path at a new folder, or set overwrite_cache: true to replace what is there`,
        )
      }
    }
  }
  if (options.dataset.length === 0)
    throw new DatasetError('no dataset: set dataset (or tokenized_path to a token store built before)')
  const sources = await resolveDatasets(options.dataset, options.datasetDir, options.baseDir)
  const evalSources =
    options.evalDataset.length > 0
      ? await resolveDatasets(options.evalDataset, options.datasetDir, options.baseDir)
      : []
  const inputs = await storeInputs(options, sources, evalSources)
  const dir = options.tokenizedPath ?? join(tokenCacheRoot(), storeKey(inputs))
  return { dir, ready: isStore(dir) && !options.overwriteCache, sources, evalSources, inputs }
}

/** Loads the store, building it first when needed (this process is the one that builds). */
export async function prepareTokenData(options: TokenDataOptions): Promise<TokenData> {
  const located = await locateTokenData(options)
  if (located.ready) {
    if (options.tokenizedPath !== null && located.sources === undefined) {
      options.warn?.(
        `tokenized_path ${located.dir} holds a token store: it is loaded as it is, and the data files and data keys ` +
          `(dataset, template, cutoff_len, packing, max_samples, ...) are not read (as LLaMA-Factory: "Loading ` +
          `dataset from disk will ignore other data arguments")`,
      )
    }
    const data = openData(located.dir, true)
    options.log?.(
      `loaded the token store ${located.dir}: ${data.train.length} sequences, ${data.train.manifest.tokens} tokens ` +
        `(nothing to tokenize)`,
    )
    return data
  }
  const stale = await removeDeadTemporaries(located.dir)
  if (stale.length > 0)
    options.warn?.(`removed ${stale.length} unfinished token store(s) that a killed run left: ${stale.join(', ')}`)
  const common = {
    workers: options.workers ?? defaultWorkers(),
    dtype: dtypeFor(options.maxTokenId),
    blockBos: options.blockBos,
    mixStrategy: options.mixStrategy,
    interleaveProbs: options.interleaveProbs,
    seed: options.seed,
    maxSamples: options.maxSamples,
    inputs: located.inputs!,
    key: storeKey(located.inputs!),
    signal: options.signal,
    log: options.log,
    progressStream: options.progressStream,
  }
  const settings = await encoderSettings(options)
  if (located.evalSources!.length === 0) {
    await buildStore(located.dir, { ...common, settings, sources: located.sources! })
  } else {
    // The eval stores are built first, inside a folder that becomes the train store's: one rename publishes all.
    await mkdir(dirname(located.dir), { recursive: true })
    const staging = await mkdtemp(join(dirname(located.dir), `.${basename(located.dir)}.eval-`))
    try {
      const evalSources = located.evalSources!
      if (options.evalOnEachDataset) {
        const names = evalDatasetNames(evalSources)
        await mkdir(join(staging, EVAL_EACH_SUBDIR))
        for (const [i, source] of evalSources.entries()) {
          await buildStore(join(staging, EVAL_EACH_SUBDIR, String(i)), {
            ...common,
            settings,
            sources: [source],
            mixStrategy: 'concat',
          })
        }
        await writeFile(join(staging, EVAL_EACH_SUBDIR, EVAL_EACH_NAMES_FILE), `${JSON.stringify(names)}\n`)
      } else {
        await buildStore(join(staging, EVAL_SUBDIR), {
          ...common,
          settings,
          sources: evalSources,
          mixStrategy: 'concat',
        })
      }
      await buildStore(located.dir, { ...common, settings, sources: located.sources! })
      const evalFolder = options.evalOnEachDataset ? EVAL_EACH_SUBDIR : EVAL_SUBDIR
      await rename(join(staging, evalFolder), join(located.dir, evalFolder))
    } finally {
      await rm(staging, { recursive: true, force: true })
    }
  }
  if (options.tokenizedPath !== null)
    options.log?.(
      `the token store is saved at ${located.dir}; later runs with tokenized_path: ${located.dir} load it without ` +
        `reading the data`,
    )
  return openData(located.dir, false)
}

/** What the tokenizing workers need to know. */
export async function encoderSettings(options: TokenDataOptions): Promise<EncoderSettings> {
  return {
    modelDir: options.modelDir,
    tokenizer: tokenizerFacts(options.tokenizer ?? (await loadTokenizer(options.modelDir))),
    stage: options.stage,
    template: options.template,
    defaultSystem: options.defaultSystem,
    enableThinking: options.enableThinking,
    cutoffLen: options.cutoffLen,
    packing: options.packing,
  }
}

/** The datasets as streams of tokenized sequences (streaming: true): the train mix, and the eval datasets. */
export async function sequenceStreams(options: TokenDataOptions): Promise<{
  train: SequenceStreamOptions
  eval: SequenceStreamOptions | null
  evalEach: { name: string; stream: SequenceStreamOptions }[] | null
}> {
  if (options.dataset.length === 0) throw new DatasetError('no dataset: set dataset')
  const settings = await encoderSettings(options)
  const common = {
    settings,
    workers: options.workers ?? defaultWorkers(),
    blockBos: options.blockBos,
    seed: options.seed,
    maxSamples: options.maxSamples,
    signal: options.signal,
  }
  const sources = await resolveDatasets(options.dataset, options.datasetDir, options.baseDir)
  const evalSources =
    options.evalDataset.length > 0
      ? await resolveDatasets(options.evalDataset, options.datasetDir, options.baseDir)
      : []
  return {
    train: { ...common, sources, mixStrategy: options.mixStrategy, interleaveProbs: options.interleaveProbs },
    eval:
      evalSources.length > 0 ? { ...common, sources: evalSources, mixStrategy: 'concat', interleaveProbs: null } : null,
    evalEach:
      options.evalOnEachDataset && evalSources.length > 0
        ? evalDatasetNames(evalSources).map((name, i) => ({
            name,
            stream: { ...common, sources: [evalSources[i]!], mixStrategy: 'concat', interleaveProbs: null },
          }))
        : null,
  }
}

/** Opens a store another process built (ranks that waited). */
export function openTokenData(dir: string): TokenData {
  return openData(dir, true)
}
