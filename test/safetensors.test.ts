import t, { type Test } from 'tap'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import {
  encodeSafetensorsHeader,
  readSafetensorsHeader,
  parseHeaderJson,
  MAX_HEADER_BYTES,
} from '../lib/checkpoint/safetensors.js'
import { parseStrictJson } from '../lib/checkpoint/strict-json.js'

/** A safetensors file from a header object (or raw header bytes) and a data section. */
function craft(header: unknown, data: Buffer, pad = true): Buffer {
  let json = Buffer.isBuffer(header)
    ? header
    : Buffer.from(typeof header === 'string' ? header : JSON.stringify(header))
  if (pad && json.length % 8) json = Buffer.concat([json, Buffer.alloc(8 - (json.length % 8), 0x20)])
  const prefix = Buffer.alloc(8)
  prefix.writeBigUInt64LE(BigInt(json.length))
  return Buffer.concat([prefix, json, data])
}

async function readCrafted(t: Test, bytes: Buffer) {
  const dir = t.testdir()
  const path = join(dir, 'x.safetensors')
  writeFileSync(path, bytes)
  return { path, read: () => readSafetensorsHeader(path) }
}

const ok = {
  a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] },
  b: { dtype: 'BF16', shape: [2, 2], data_offsets: [8, 16] },
}

t.test('a valid file: entries in data order, metadata, data start', async (t) => {
  const { read } = await readCrafted(t, craft({ __metadata__: { format: 'pt' }, ...ok }, Buffer.alloc(16)))
  const file = await read()
  t.same(file.metadata, { format: 'pt' })
  t.same(
    file.tensors.map((x) => [x.name, x.dtype, x.shape, x.begin, x.end]),
    [
      ['a', 'F32', [2], 0, 8],
      ['b', 'BF16', [2, 2], 8, 16],
    ],
  )
  t.equal(file.dataStart % 8, 0)
})

t.test('zero-sized tensors are valid', async (t) => {
  const { read } = await readCrafted(
    t,
    craft({ e: { dtype: 'F32', shape: [0, 4], data_offsets: [0, 0] } }, Buffer.alloc(0)),
  )
  t.equal((await read()).tensors[0]!.end, 0)
})

t.test('truncated: shorter than the 8-byte length prefix', async (t) => {
  const { read } = await readCrafted(t, Buffer.from([1, 2, 3]))
  await t.rejects(read(), { code: 'LLAMAPRO_SAFETENSORS', message: /x\.safetensors: truncated: the file is 3 bytes/ })
})

t.test('header length past the end of the file', async (t) => {
  const prefix = Buffer.alloc(8)
  prefix.writeBigUInt64LE(5000n)
  const { read } = await readCrafted(t, Buffer.concat([prefix, Buffer.from('{}')]))
  await t.rejects(read(), { message: /header length 5000 runs past the end of the file \(10 bytes\)/ })
})

t.test('header length over 100 MB', async (t) => {
  const prefix = Buffer.alloc(8)
  prefix.writeBigUInt64LE(BigInt(MAX_HEADER_BYTES) + 1n)
  const { read } = await readCrafted(t, Buffer.concat([prefix, Buffer.alloc(64)]))
  await t.rejects(read(), { message: /header length 100000001 is over the 100000000-byte limit/ })
})

t.test('header is not UTF-8', async (t) => {
  const { read } = await readCrafted(t, craft(Buffer.from([0x7b, 0xff, 0xfe, 0x7d]), Buffer.alloc(0)))
  await t.rejects(read(), { message: /not valid UTF-8/ })
})

t.test('header is not JSON', async (t) => {
  const { read } = await readCrafted(t, craft('{"a": {"dtype": "F32",', Buffer.alloc(0)))
  await t.rejects(read(), { message: /the header is not valid JSON/ })
})

t.test('header is JSON but not an object', async (t) => {
  const { read } = await readCrafted(t, craft('[1, 2]', Buffer.alloc(0)))
  await t.rejects(read(), { message: /must be a JSON object/ })
})

t.test('unknown dtype names the tensor and lists valid dtypes', async (t) => {
  const { read } = await readCrafted(
    t,
    craft({ w: { dtype: 'F24', shape: [1], data_offsets: [0, 3] } }, Buffer.alloc(3)),
  )
  await t.rejects(read(), { message: /tensor "w": unknown dtype "F24" \(valid: F64, F32, F16, BF16/ })
})

t.test('overlapping offsets', async (t) => {
  const header = {
    a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] },
    b: { dtype: 'F32', shape: [2], data_offsets: [4, 12] },
  }
  const { read } = await readCrafted(t, craft(header, Buffer.alloc(12)))
  await t.rejects(read(), { message: /tensor "b": data_offsets \[4, 12\] overlap the previous tensor/ })
})

t.test('offsets out of range (past the end of the data)', async (t) => {
  const { read } = await readCrafted(
    t,
    craft({ a: { dtype: 'F32', shape: [4], data_offsets: [0, 16] } }, Buffer.alloc(8)),
  )
  await t.rejects(read(), { message: /tensor "a": data_offsets end at 16 but the file holds only 8 data bytes/ })
})

t.test('offsets out of order (end before begin)', async (t) => {
  const { read } = await readCrafted(
    t,
    craft({ a: { dtype: 'F32', shape: [0], data_offsets: [8, 0] } }, Buffer.alloc(8)),
  )
  await t.rejects(read(), { message: /tensor "a": data_offsets must be \[begin, end\] with 0 <= begin <= end/ })
})

t.test('a gap between tensors', async (t) => {
  const header = {
    a: { dtype: 'F32', shape: [1], data_offsets: [0, 4] },
    b: { dtype: 'F32', shape: [1], data_offsets: [8, 12] },
  }
  const { read } = await readCrafted(t, craft(header, Buffer.alloc(12)))
  await t.rejects(read(), { message: /tensor "b": a gap of 4 bytes before it/ })
})

t.test('bytes after the last tensor', async (t) => {
  const { read } = await readCrafted(
    t,
    craft({ a: { dtype: 'F32', shape: [1], data_offsets: [0, 4] } }, Buffer.alloc(12)),
  )
  await t.rejects(read(), { message: /8 bytes after the last tensor are not described/ })
})

t.test('byte length differs from shape x dtype size', async (t) => {
  const { read } = await readCrafted(
    t,
    craft({ a: { dtype: 'F16', shape: [3], data_offsets: [0, 8] } }, Buffer.alloc(8)),
  )
  await t.rejects(read(), { message: /tensor "a": holds 8 bytes but F16 \[3\] needs 6/ })
})

t.test('a tensor named twice', async (t) => {
  const text =
    '{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}'
  const { read } = await readCrafted(t, craft(text, Buffer.alloc(8)))
  await t.rejects(read(), { message: /duplicate key "a"/ })
})

t.test('bad shapes, unknown fields and non-string metadata', async (t) => {
  t.throws(() => parseHeaderJson('f', JSON.stringify({ a: { dtype: 'F32', shape: [-1], data_offsets: [0, 0] } }), 0), {
    message: /shape must be an array of non-negative integers/,
  })
  t.throws(
    () => parseHeaderJson('f', JSON.stringify({ a: { dtype: 'F32', shape: [1], data_offsets: [0, 4], x: 1 } }), 4),
    { message: /unknown field "x"/ },
  )
  t.throws(() => parseHeaderJson('f', JSON.stringify({ __metadata__: { format: 1 } }), 0), {
    message: /__metadata__.format must be a string/,
  })
  t.throws(() => parseHeaderJson('f', JSON.stringify({ '': { dtype: 'F32', shape: [0], data_offsets: [0, 0] } }), 0), {
    message: /empty name/,
  })
})

t.test('a missing file', async (t) => {
  await t.rejects(readSafetensorsHeader('/nonexistent/model.safetensors'), {
    message: /\/nonexistent\/model.safetensors: file not found/,
  })
})

t.test('the encoder pads to 8 bytes, writes {"format":"pt"} and lays tensors out back to back', async (t) => {
  const encoded = encodeSafetensorsHeader([
    { name: 'x', dtype: 'F32', shape: [3] },
    { name: 'y', dtype: 'BF16', shape: [2, 1] },
  ])
  t.equal(encoded.bytes.length % 8, 0)
  t.same(
    encoded.layout.map((l) => [l.name, l.begin, l.end]),
    [
      ['x', 0, 12],
      ['y', 12, 16],
    ],
  )
  t.equal(encoded.dataSize, 16)
  const { read } = await readCrafted(t, Buffer.concat([encoded.bytes, Buffer.alloc(16)]))
  const file = await read()
  t.same(file.metadata, { format: 'pt' })
  t.equal(file.dataStart, encoded.bytes.length)
  t.throws(
    () =>
      encodeSafetensorsHeader([
        { name: 'x', dtype: 'F32', shape: [1] },
        { name: 'x', dtype: 'F32', shape: [1] },
      ]),
    { message: /written twice/ },
  )
})

t.test('strict JSON: rejects what JSON.parse lets through', async (t) => {
  t.same(parseStrictJson('{"a": [1, 2.5, -3e2, true, null, "x\\"y"]}'), { a: [1, 2.5, -300, true, null, 'x"y'] })
  t.throws(() => parseStrictJson('{"a":1,"a":2}'), { message: /duplicate key "a"/ })
  t.throws(() => parseStrictJson('{"a": 12345678901234567890}'), { message: /too large to represent exactly/ })
  t.throws(() => parseStrictJson('{"a": 1} x'), { message: /unexpected text/ })
  t.throws(() => parseStrictJson('{"a": "\u0001"}'), { message: /control character/ })
  t.throws(() => parseStrictJson('[1 2]'), { message: /expected "," or "]"/ })
})
