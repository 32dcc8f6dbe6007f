import { parseArgs } from './args.js'
import { exportGguf, importGguf } from '../gguf/convert.js'
import { formatBytes } from '../util/format.js'
import { positionals } from './args.js'

export const IMPORT_HELP = `llamapro import <file.gguf> <out_dir> [--dtype float32|bfloat16|float16] [--force] [--json]

Converts a GGUF model of the llama architecture (as llama.cpp, Ollama and LM Studio keep them) into a Hugging Face
folder: config.json, model.safetensors, tokenizer.json, tokenizer_config.json (with the chat template) and
generation_config.json. Quantized weights (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K) are dequantized exactly as
ggml does; the q/k rows llama.cpp reorders are put back in Hugging Face's order. --dtype defaults to float32, which
holds every dequantized value exactly (as transformers' GGUF loader); bfloat16 halves the size and rounds.`

export const EXPORT_HELP = `llamapro export <model_dir> <file.gguf> [--type f16|bf16|q8_0|f32] [--force] [--json]

Writes a Hugging Face llama model folder as one GGUF v3 file that llama.cpp and the gguf Python package read:
metadata, tokenizer, chat template, and q/k rows in llama.cpp's order. --type (default f16) applies to the 2-D
weights; norms stay F32, as llama.cpp's converter writes them.`

export async function runImport(argv: string[]): Promise<number> {
  const { values, positionals: args } = parseArgs({
    args: argv,
    allowPositionals: true,
    strict: true,
    options: {
      dtype: { type: 'string' },
      force: { type: 'boolean', default: false },
      json: { type: 'boolean', default: false },
    },
  })
  const [file, out] = positionals(args, ['file.gguf', 'out_dir'])
  const started = Date.now()
  const result = await importGguf(file!, out!, { dtype: values.dtype, force: values.force })
  const seconds = ((Date.now() - started) / 1000).toFixed(1)
  const types = Object.entries(result.sourceTypes)
    .map(([t, n]) => `${n} ${t}`)
    .join(', ')
  console.log(
    values.json
      ? JSON.stringify(result, null, 2)
      : `Imported ${result.tensors} tensors (${types}) from ${file} as ${result.dtype}: wrote ${out} ` +
          `(${formatBytes(result.bytesWritten)}) in ${seconds} s.`,
  )
  return 0
}

export async function runExport(argv: string[]): Promise<number> {
  const { values, positionals: args } = parseArgs({
    args: argv,
    allowPositionals: true,
    strict: true,
    options: {
      type: { type: 'string' },
      force: { type: 'boolean', default: false },
      json: { type: 'boolean', default: false },
    },
  })
  const [dir, file] = positionals(args, ['model_dir', 'file.gguf'])
  const started = Date.now()
  const result = await exportGguf(dir!, file!, { type: values.type, force: values.force })
  const seconds = ((Date.now() - started) / 1000).toFixed(1)
  const types = Object.entries(result.types)
    .map(([t, n]) => `${n} ${t}`)
    .join(', ')
  console.log(
    values.json
      ? JSON.stringify(result, null, 2)
      : `Exported ${result.tensors} tensors (${types}) from ${dir}: wrote ${file} (${formatBytes(result.bytes)}) in ` +
          `${seconds} s.`,
  )
  return 0
}
