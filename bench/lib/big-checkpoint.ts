/**
 * Generates a large LLaMA checkpoint on disk quickly (random float16 values from a repeated random block), for
 * the I/O benchmarks. The values are meaningless; the layout is exactly a real checkpoint's.
 */
import { open, mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { parseModelConfig } from '../../lib/checkpoint/config.js'
import { expectedParameters } from '../../lib/checkpoint/parameters.js'
import { configJson, writeShardedSafetensors } from '../../lib/checkpoint/write-shards.js'

export function bigConfig(layers: number): Record<string, unknown> {
  return {
    architectures: ['LlamaForCausalLM'],
    model_type: 'llama',
    vocab_size: 32000,
    hidden_size: 2048,
    intermediate_size: 5632,
    num_hidden_layers: layers,
    num_attention_heads: 16,
    num_key_value_heads: 4,
    max_position_embeddings: 4096,
    rms_norm_eps: 1e-5,
    rope_theta: 10000,
    tie_word_embeddings: false,
    torch_dtype: 'float16',
  }
}

export async function writeBigCheckpoint(dir: string, layers: number, shardSize: number): Promise<number> {
  const raw = bigConfig(layers)
  const config = parseModelConfig(raw)
  const tensors = expectedParameters(config).map((p) => ({
    name: p.name,
    dtype: 'F16' as const,
    shape: p.shape,
    nbytes: p.shape.reduce((a, b) => a * b, 1) * 2,
  }))
  // 8 MiB of random float16 values in [-0.05, 0.05] (exponent bits kept small: no NaN or Inf).
  const block = Buffer.alloc(8 << 20)
  for (let i = 0; i < block.length; i += 2) {
    const mantissa = Math.floor(Math.random() * 1024)
    const exponent = 5 + Math.floor(Math.random() * 6)
    block.writeUInt16LE(((Math.random() < 0.5 ? 1 : 0) << 15) | (exponent << 10) | mantissa, i)
  }
  await mkdir(dir, { recursive: true })
  const total = tensors.reduce((s, t) => s + t.nbytes / 2, 0)
  const written = await writeShardedSafetensors(dir, tensors, shardSize, total, async (path, header, ordered) => {
    const file = await open(path, 'w')
    try {
      await file.write(header.bytes)
      for (const t of ordered) {
        for (let left = t.nbytes; left > 0; ) {
          const n = Math.min(left, block.length)
          await file.write(block, 0, n)
          left -= n
        }
      }
    } finally {
      await file.close()
    }
  })
  await writeFile(join(dir, 'config.json'), configJson(raw))
  return written.bytes
}
