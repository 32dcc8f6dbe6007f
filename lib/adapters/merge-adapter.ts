/**
 * `llamapro merge --adapter`: a LoRA adapter merged into its base model, W' = W + scale · B A (PEFT's
 * merge_and_unload), modules_to_save tensors replacing the base ones, written as a normal Hugging Face folder —
 * what llama.cpp's converters and vLLM without LoRA support load. Streamed like expansion: no LibTorch; one
 * merged tensor at a time is computed (float64 accumulation, rounded once to the base dtype) and spilled to a
 * scratch file, and the shards are then written by the same stream copier as expand and delta merges.
 */
import { mkdir, open, readFile, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { CONFIG_FILE, openCheckpoint } from '../checkpoint/checkpoint.js'
import { SAFETENSORS_DTYPE_SIZES } from '../checkpoint/dtypes.js'
import { DEFAULT_SHARD_SIZE } from '../checkpoint/shards.js'
import { copySideFiles } from '../checkpoint/side-files.js'
import { StreamCopier, type TensorSource } from '../checkpoint/stream-copy.js'
import { configJson, writeShardedSafetensors } from '../checkpoint/write-shards.js'
import { LlamaproError } from '../errors.js'
import { checkOutputDir, writeFolderAtomically } from '../util/atomic-dir.js'
import { type FloatDtype, decodeFloats, encodeFloats } from '../util/float-bits.js'
import { parseSize } from '../util/size.js'
import { PEFT_PREFIX, loraScale, readAdapter } from './peft-adapter.js'

export interface AdapterMergeResult {
  output: string
  /** Linear weights that received W + scale·B·A. */
  merged: number
  /** Base tensors replaced by the adapter's modules_to_save tensors. */
  replaced: number
  files: string[]
  bytesWritten: number
}

const FLOAT_DTYPES: readonly string[] = ['F32', 'BF16', 'F16']

async function readRange(path: string, offset: number, nbytes: number): Promise<Uint8Array> {
  const handle = await open(path, 'r')
  try {
    const buffer = Buffer.allocUnsafe(nbytes)
    let done = 0
    while (done < nbytes) {
      const { bytesRead } = await handle.read(buffer, done, nbytes - done, offset + done)
      if (bytesRead === 0) throw new LlamaproError('LLAMAPRO_MERGE', `${path}: unexpected end of file`)
      done += bytesRead
    }
    return buffer
  } finally {
    await handle.close()
  }
}

/** W [out, in] + scale · B [out, r] · A [r, in], accumulated in float64. */
export function mergeLoraWeight(
  w: Float32Array,
  a: Float32Array,
  b: Float32Array,
  outFeatures: number,
  inFeatures: number,
  rank: number,
  scale: number,
): Float32Array {
  const merged = new Float32Array(w.length)
  const row = new Float64Array(inFeatures)
  for (let i = 0; i < outFeatures; i++) {
    row.fill(0)
    for (let k = 0; k < rank; k++) {
      const coefficient = b[i * rank + k]!
      if (coefficient === 0) continue
      const offset = k * inFeatures
      for (let j = 0; j < inFeatures; j++) row[j]! += coefficient * a[offset + j]!
    }
    const base = i * inFeatures
    for (let j = 0; j < inFeatures; j++) merged[base + j] = w[base + j]! + scale * row[j]!
  }
  return merged
}

export async function mergeAdapter(
  baseDir: string,
  adapterDir: string,
  outDir: string,
  options: { force?: boolean; shardSize?: string | number } = {},
): Promise<AdapterMergeResult> {
  const base = await openCheckpoint(baseDir)
  const adapter = await readAdapter(adapterDir)
  const scale = loraScale(adapter.config)
  const baseByName = new Map(base.tensors.map((t) => [t.name, t]))
  const adapterByName = new Map(adapter.file.tensors.map((t) => [t.name.slice(PEFT_PREFIX.length), t]))
  const check = (cond: boolean, message: string) => {
    if (!cond)
      throw new LlamaproError(
        'LLAMAPRO_MERGE',
        `${adapter.weightsPath}: ${message} (was the adapter trained on another model than ${baseDir}?)`,
      )
  }
  for (const target of adapter.targets) {
    const w = baseByName.get(`${target}.weight`)
    check(w !== undefined, `adapts ${target}, which the base model does not have`)
    const a = adapterByName.get(`${target}.lora_A.weight`)!
    const b = adapterByName.get(`${target}.lora_B.weight`)!
    check(
      w!.shape.length === 2 && a.shape[1] === w!.shape[1] && b.shape[0] === w!.shape[0],
      `${target}: lora_A [${a.shape}] / lora_B [${b.shape}] do not fit the base weight [${w!.shape}]`,
    )
    check(
      FLOAT_DTYPES.includes(w!.dtype) && FLOAT_DTYPES.includes(a.dtype) && FLOAT_DTYPES.includes(b.dtype),
      `${target}: merging needs F32, BF16 or F16 tensors`,
    )
  }
  for (const name of adapter.fullyTrained) {
    const t = baseByName.get(name)
    check(t !== undefined, `holds ${PEFT_PREFIX}${name}, but the base model has no tensor ${name}`)
    check(
      t!.shape.join() === adapterByName.get(name)!.shape.join(),
      `${name} has shape [${adapterByName.get(name)!.shape}] but the base has [${t!.shape}]`,
    )
  }
  const shardSize = parseSize(options.shardSize ?? DEFAULT_SHARD_SIZE, 'shard size')
  await checkOutputDir(outDir, options.force ?? false, 'pass --force')
  const targets = new Set(adapter.targets.map((t) => `${t}.weight`))
  const fullyTrained = new Set(adapter.fullyTrained)
  const copier = new StreamCopier()
  const written = await writeFolderAtomically(outDir, async (tmp) => {
    const scratch = join(tmp, '.merge-scratch')
    await mkdir(scratch)
    try {
      const tensors = []
      let index = 0
      for (const t of base.tensors) {
        let source: TensorSource = { file: t.file, offset: t.offset, nbytes: t.nbytes }
        if (targets.has(t.name) || fullyTrained.has(t.name)) {
          const dtype = t.dtype as FloatDtype
          let values: Float32Array
          if (targets.has(t.name)) {
            const module = t.name.slice(0, -'.weight'.length)
            const a = adapterByName.get(`${module}.lora_A.weight`)!
            const b = adapterByName.get(`${module}.lora_B.weight`)!
            const [w, av, bv] = await Promise.all([
              readRange(t.file, t.offset, t.nbytes).then((bytes) => decodeFloats(bytes, dtype)),
              readRange(adapter.weightsPath, adapter.file.dataStart + a.begin, a.end - a.begin).then((bytes) =>
                decodeFloats(bytes, a.dtype as FloatDtype),
              ),
              readRange(adapter.weightsPath, adapter.file.dataStart + b.begin, b.end - b.begin).then((bytes) =>
                decodeFloats(bytes, b.dtype as FloatDtype),
              ),
            ])
            values = mergeLoraWeight(w, av, bv, t.shape[0]!, t.shape[1]!, adapter.config.r, scale)
          } else {
            const s = adapterByName.get(t.name)!
            check(
              FLOAT_DTYPES.includes(dtype) && FLOAT_DTYPES.includes(s.dtype),
              `${t.name}: merging needs F32, BF16 or F16 tensors`,
            )
            values = decodeFloats(
              await readRange(adapter.weightsPath, adapter.file.dataStart + s.begin, s.end - s.begin),
              s.dtype as FloatDtype,
            )
          }
          const path = join(scratch, `${index++}.bin`)
          await writeFile(path, encodeFloats(values, dtype).encoded)
          source = { file: path, offset: 0, nbytes: t.nbytes }
        }
        tensors.push({ name: t.name, dtype: t.dtype, shape: t.shape, nbytes: t.nbytes, source })
      }
      const totalParameters = tensors.reduce((s, t) => s + t.nbytes / SAFETENSORS_DTYPE_SIZES[t.dtype], 0)
      const shards = await writeShardedSafetensors(tmp, tensors, shardSize, totalParameters, (path, header, ordered) =>
        copier.writeFile(
          path,
          header,
          ordered.map((t) => t.source),
        ),
      )
      await copySideFiles(base.dir, tmp)
      await writeFile(
        join(tmp, CONFIG_FILE),
        configJson(JSON.parse(await readFile(join(base.dir, CONFIG_FILE), 'utf8'))),
      )
      return shards
    } finally {
      await copier.close()
      await rm(scratch, { recursive: true, force: true })
    }
  })
  return {
    output: outDir,
    merged: targets.size,
    replaced: fullyTrained.size,
    files: written.files,
    bytesWritten: written.bytes,
  }
}
