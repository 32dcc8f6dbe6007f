/**
 * `llamapro import` (GGUF -> Hugging Face folder) and `llamapro export` (Hugging Face folder -> GGUF). Formats are
 * parsed and validated here; the bytes are converted by native code (native/dequant.cc) in bounded chunks, straight
 * from one file into the other.
 */
import { existsSync } from 'node:fs'
import { readFile, rename, rm, stat, writeFile } from 'node:fs/promises'
import { basename, dirname, join, resolve } from 'node:path'
import { openCheckpoint } from '../checkpoint/checkpoint.js'
import { parseModelConfig } from '../checkpoint/config.js'
import { type ModelDtype, MODEL_DTYPES, parseModelDtype, toSafetensorsDtype } from '../checkpoint/dtypes.js'
import { encodeSafetensorsHeader, safetensorsOrder } from '../checkpoint/safetensors.js'
import { configJson } from '../checkpoint/write-shards.js'
import { LlamaproError, UsageError } from '../errors.js'
import type { ConvertItem } from '../native/binding.js'
import { callNative } from '../native/call.js'
import { native } from '../native/load.js'
import { checkOutputDir, writeFolderAtomically } from '../util/atomic-dir.js'
import { GGML_FROM_SAFETENSORS, GGML_TYPE_BY_NAME, ggmlTypeName } from './ggml-types.js'
import {
  ggufTensorName,
  hfTensorName,
  llamaConfigFromGguf,
  llamaMetadataFromConfig,
  permutedHeads,
} from './llama-model.js'
import { GgufError, GgufMetadata, readGgufFile } from './reader.js'
import { tokenizerFromGguf, tokenizerToGguf } from './tokenizer.js'
import { encodeGguf } from './writer.js'

export interface ImportGgufOptions {
  /** Output dtype; default float32, which holds every dequantized value exactly (as transformers' GGUF loader). */
  dtype?: ModelDtype | string
  /** Replace a non-empty output folder. */
  force?: boolean
}

export interface ImportGgufResult {
  outDir: string
  tensors: number
  dtype: ModelDtype
  /** ggml type name -> how many tensors were stored in it. */
  sourceTypes: Record<string, number>
  bytesWritten: number
  files: string[]
}

const WEIGHTS = 'model.safetensors'

function rowsAndCols(dims: readonly number[], permuted: boolean): { rows: number; cols: number } {
  if (dims.length === 1 && permuted) return { rows: dims[0]!, cols: 1 } // a q/k bias: its rows are single values
  return { rows: dims.slice(1).reduce((a, b) => a * b, 1), cols: dims[0]! }
}

export async function importGguf(
  file: string,
  outDir: string,
  options: ImportGgufOptions = {},
): Promise<ImportGgufResult> {
  const dtype = options.dtype === undefined ? 'float32' : parseModelDtype(options.dtype)
  if (!dtype)
    throw new UsageError(`--dtype must be one of ${MODEL_DTYPES.join(', ')}, got ${JSON.stringify(options.dtype)}`)
  const gguf = await readGgufFile(file)
  const meta = new GgufMetadata(gguf)
  const names = new Set(gguf.tensors.map((t) => t.name))
  const contextLength = meta.integer('llama.context_length') ?? 2048
  const tokenizer = meta.has('tokenizer.ggml.model') ? tokenizerFromGguf(meta, contextLength) : undefined
  const embed = gguf.tensors.find((t) => t.name === 'token_embd.weight')
  if (!embed) throw new GgufError(file, 'the file has no token_embd.weight tensor')
  const vocabSize = meta.integer('llama.vocab_size') ?? embed.dims[1] ?? tokenizer?.vocabSize ?? 0
  const config = llamaConfigFromGguf(meta, names, vocabSize)
  config.torch_dtype = dtype
  const modelConfig = parseModelConfig(config, `${file} (as config.json)`)

  // Every tensor must have a place, and the model must have all of its tensors with the shapes it needs.
  const expected = expectedShapes(modelConfig)
  const sourceTypes: Record<string, number> = {}
  const mapped = gguf.tensors.map((t) => {
    const hf = hfTensorName(t.name)
    if (!hf)
      throw new GgufError(
        file,
        `tensor "${t.name}" has no place in a LLaMA model (llamapro maps token_embd, output_norm, output and ` +
          `blk.N.{attn_norm, attn_q, attn_k, attn_v, attn_output, ffn_norm, ffn_gate, ffn_up, ffn_down})`,
      )
    // ggml treats trailing dimensions of 1 as absent ([n, 1] is a vector of n).
    const dims = [...t.dims]
    while (dims.length > 1 && dims[dims.length - 1] === 1) dims.pop()
    const shape = dims.reverse()
    const want = expected.get(hf)
    if (!want) throw new GgufError(file, `tensor "${t.name}" (${hf}) is not part of the model config.json describes`)
    if (want.join(',') !== shape.join(','))
      throw new GgufError(file, `tensor "${t.name}" has shape [${shape}] but ${hf} needs [${want}]`)
    sourceTypes[ggmlTypeName(t.type)] = (sourceTypes[ggmlTypeName(t.type)] ?? 0) + 1
    return { info: t, name: hf, dtype: toSafetensorsDtype(dtype), shape }
  })
  const present = new Set(mapped.map((m) => m.name))
  for (const name of expected.keys())
    if (!present.has(name)) throw new GgufError(file, `the file has no tensor for ${name} (${ggufTensorName(name)})`)

  const ordered = safetensorsOrder(mapped)
  const header = encodeSafetensorsHeader(ordered)
  const dstType = GGML_FROM_SAFETENSORS[toSafetensorsDtype(dtype)]!
  const items: ConvertItem[] = ordered.map((m, i) => {
    const heads = permutedHeads(m.name, modelConfig.numHeads, modelConfig.numKvHeads)
    return {
      name: m.info.name,
      source: resolve(file),
      srcOffset: gguf.dataStart + m.info.offset,
      srcType: m.info.type,
      ...rowsAndCols(m.info.dims, heads !== undefined),
      dstOffset: header.bytes.length + header.layout[i]!.begin,
      dstType,
      order: heads === undefined ? 'as-is' : 'to-hf',
      ...(heads === undefined ? {} : { heads }),
    }
  })
  await checkOutputDir(outDir, options.force === true)
  const files: string[] = []
  await writeFolderAtomically(outDir, async (tmp) => {
    const fileSize = header.bytes.length + header.dataSize
    await callNative(`importing ${file}`, () =>
      native().convertTensors(join(tmp, WEIGHTS), header.bytes, fileSize, items),
    )
    files.push(WEIGHTS)
    await writeFile(join(tmp, 'config.json'), configJson(config))
    files.push('config.json')
    if (tokenizer) {
      await writeFile(join(tmp, 'tokenizer.json'), JSON.stringify(tokenizer.tokenizerJson))
      await writeFile(join(tmp, 'tokenizer_config.json'), `${JSON.stringify(tokenizer.tokenizerConfig, null, 2)}\n`)
      await writeFile(join(tmp, 'generation_config.json'), `${JSON.stringify(tokenizer.generationConfig, null, 2)}\n`)
      files.push('tokenizer.json', 'tokenizer_config.json', 'generation_config.json')
    }
  })
  return {
    outDir,
    tensors: items.length,
    dtype,
    sourceTypes,
    bytesWritten: header.bytes.length + header.dataSize,
    files,
  }
}

function expectedShapes(c: ReturnType<typeof parseModelConfig>): Map<string, number[]> {
  const m = new Map<string, number[]>()
  const q = c.numHeads * c.headDim
  const kv = c.numKvHeads * c.headDim
  m.set('model.embed_tokens.weight', [c.vocabSize, c.hiddenSize])
  m.set('model.norm.weight', [c.hiddenSize])
  if (!c.tieWordEmbeddings) m.set('lm_head.weight', [c.vocabSize, c.hiddenSize])
  for (let i = 0; i < c.numLayers; i++) {
    const p = `model.layers.${i}.`
    m.set(`${p}input_layernorm.weight`, [c.hiddenSize])
    m.set(`${p}post_attention_layernorm.weight`, [c.hiddenSize])
    m.set(`${p}self_attn.q_proj.weight`, [q, c.hiddenSize])
    m.set(`${p}self_attn.k_proj.weight`, [kv, c.hiddenSize])
    m.set(`${p}self_attn.v_proj.weight`, [kv, c.hiddenSize])
    m.set(`${p}self_attn.o_proj.weight`, [c.hiddenSize, q])
    m.set(`${p}mlp.gate_proj.weight`, [c.intermediateSize, c.hiddenSize])
    m.set(`${p}mlp.up_proj.weight`, [c.intermediateSize, c.hiddenSize])
    m.set(`${p}mlp.down_proj.weight`, [c.hiddenSize, c.intermediateSize])
    if (c.qkvBias) {
      m.set(`${p}self_attn.q_proj.bias`, [q])
      m.set(`${p}self_attn.k_proj.bias`, [kv])
      m.set(`${p}self_attn.v_proj.bias`, [kv])
    }
    if (c.oBias) m.set(`${p}self_attn.o_proj.bias`, [c.hiddenSize])
    if (c.mlpBias) for (const n of ['gate_proj', 'up_proj']) m.set(`${p}mlp.${n}.bias`, [c.intermediateSize])
    if (c.mlpBias) m.set(`${p}mlp.down_proj.bias`, [c.hiddenSize])
  }
  return m
}

export const EXPORT_TYPES = ['f32', 'f16', 'bf16', 'q8_0'] as const
export type ExportType = (typeof EXPORT_TYPES)[number]
// llama_ftype: ALL_F32, MOSTLY_F16, MOSTLY_Q8_0, MOSTLY_BF16
const FILE_TYPE: Record<ExportType, number> = { f32: 0, f16: 1, q8_0: 7, bf16: 32 }

export interface ExportGgufOptions {
  /** Type of the 2-D weights; 1-D tensors (norms, biases) are always F32, as llama.cpp writes them. Default f16. */
  type?: ExportType | string
  force?: boolean
  /** general.name; default the folder's name. */
  name?: string
}

export interface ExportGgufResult {
  file: string
  tensors: number
  bytes: number
  types: Record<string, number>
}

export async function exportGguf(
  modelDir: string,
  file: string,
  options: ExportGgufOptions = {},
): Promise<ExportGgufResult> {
  const type = (options.type ?? 'f16').toLowerCase() as ExportType
  if (!EXPORT_TYPES.includes(type))
    throw new UsageError(`--type must be one of ${EXPORT_TYPES.join(', ')}, got ${JSON.stringify(options.type)}`)
  const target = resolve(file)
  if (existsSync(target) && !options.force) {
    throw new LlamaproError('LLAMAPRO_OUTPUT_EXISTS', `output file ${file} already exists; pass --force to replace it`)
  }
  if (existsSync(target) && (await stat(target)).isDirectory())
    throw new LlamaproError('LLAMAPRO_OUTPUT_EXISTS', `output path ${file} is a folder`)
  const checkpoint = await openCheckpoint(modelDir)
  const config = checkpoint.config
  if (config.modelType !== 'llama') {
    throw new GgufError(modelDir, `model_type "${config.modelType}": export writes the llama architecture only`)
  }
  const metadata = llamaMetadataFromConfig(
    checkpoint.rawConfig,
    options.name ?? basename(resolve(modelDir)),
    join(modelDir, 'config.json'),
  )
  metadata.push(['general.file_type', { type: 'u32', value: FILE_TYPE[type] }])
  if (type === 'q8_0') metadata.push(['general.quantization_version', { type: 'u32', value: 2 }])
  const tokenizerPath = join(modelDir, 'tokenizer.json')
  if (existsSync(tokenizerPath)) {
    const tokenizerJson = JSON.parse(await readFile(tokenizerPath, 'utf8')) as Record<string, unknown>
    const configPath = join(modelDir, 'tokenizer_config.json')
    const tokenizerConfig = existsSync(configPath)
      ? (JSON.parse(await readFile(configPath, 'utf8')) as Record<string, unknown>)
      : {}
    let template = typeof tokenizerConfig.chat_template === 'string' ? tokenizerConfig.chat_template : null
    if (template === null && existsSync(join(modelDir, 'chat_template.jinja')))
      template = await readFile(join(modelDir, 'chat_template.jinja'), 'utf8')
    metadata.push(...tokenizerToGguf(tokenizerJson, tokenizerConfig, template, config.vocabSize, tokenizerPath))
  }

  const weightType = GGML_TYPE_BY_NAME.get(type.toUpperCase())!.id
  const types: Record<string, number> = {}
  const planned = checkpoint.tensors.map((t) => {
    const name = ggufTensorName(t.name)
    if (!name) throw new GgufError(modelDir, `tensor ${t.name} has no GGUF name in the llama architecture`)
    const srcType = GGML_FROM_SAFETENSORS[t.dtype]
    if (srcType === undefined)
      throw new GgufError(modelDir, `tensor ${t.name} is ${t.dtype}; export reads F32, F16 and BF16`)
    const dims = [...t.shape].reverse()
    let dstType = t.shape.length === 1 ? 0 : weightType
    // Q8_0 needs rows of whole 32-value blocks; llama.cpp falls back to F16
    if (dstType === 8 && dims[0]! % 32 !== 0) dstType = 1
    types[ggmlTypeName(dstType)] = (types[ggmlTypeName(dstType)] ?? 0) + 1
    return { t, name, dims, srcType, dstType }
  })
  const encoded = encodeGguf(
    metadata,
    planned.map((p) => ({ name: p.name, dims: p.dims, type: p.dstType })),
  )
  const items: ConvertItem[] = planned.map((p, i) => {
    const heads = permutedHeads(p.t.name, config.numHeads, config.numKvHeads)
    return {
      name: p.t.name,
      source: p.t.file,
      srcOffset: p.t.offset,
      srcType: p.srcType,
      ...rowsAndCols(p.dims, heads !== undefined),
      dstOffset: encoded.offsets[i]!,
      dstType: p.dstType,
      order: heads === undefined ? 'as-is' : 'to-gguf',
      ...(heads === undefined ? {} : { heads }),
    }
  })
  const tmp = join(dirname(target), `.${basename(target)}.tmp-${process.pid}-${Date.now().toString(36)}`)
  try {
    await callNative(`exporting ${modelDir}`, () =>
      native().convertTensors(tmp, encoded.header, encoded.fileSize, items),
    )
    await rename(tmp, target)
  } catch (error) {
    await rm(tmp, { force: true })
    throw error
  }
  return { file, tensors: items.length, bytes: encoded.fileSize, types }
}
