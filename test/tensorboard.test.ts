// The TensorBoard event writer, checked by TensorBoard's own reader (PyPI `tensorboard`, no TensorFlow, see
// test/reference/tensorboard_events.py): its record reader verifies both CRCs of every record, protobuf parses each
// Event (and must re-serialize it to the same bytes), EventAccumulator loads scalars and text as the Scalars and
// Text tabs do, and the text plugin renders the text.
import t, { type Test } from 'tap'
import { execFile, spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { statSync } from 'node:fs'
import { copyFile, mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { basename, dirname, join } from 'node:path'
import { promisify } from 'node:util'
import { crc32c, maskedCrc32c } from '../lib/report/crc32c.js'
import {
  EVENT_FILE_VERSION,
  TensorBoardWriter,
  defaultLoggingDir,
  tensorboardScalars,
  type TensorBoardWriterOptions,
} from '../lib/report/tensorboard.js'
import { REPO_ROOT, pythonPath, runPythonJson } from './helpers/python.js'

interface ReadValue {
  tag: string
  kind: string
  simple_value?: number | string
  plugin?: string
  dtype?: number
  shape?: number[]
  strings?: string[]
  same_bytes_as_text_pb?: boolean
}
interface ReadRecord {
  wall_time: number
  step: number
  file_version: string
  values: ReadValue[]
  canonical: boolean
}
interface ReadFile {
  records: ReadRecord[]
  error: string | null
  accumulator: {
    file_version: number
    scalar_tags: string[]
    text_tags: string[]
    scalars: Record<string, [number, number, number | string][]>
    texts: Record<string, { wall_time: number; step: number; html: string }[]>
  }
}
interface ReadResult {
  masked_crc: Record<string, number>
  files: Record<string, ReadFile>
}

function tensorboardRead(files: string[], crcInputs: string[] = []): Promise<ReadResult> {
  const request = JSON.stringify({ files, crc_inputs: crcInputs })
  return runPythonJson<ReadResult>(['test/reference/tensorboard_events.py'], request)
}

/** What TensorBoard stores of a number: a float32 (and JSON's spelling of the non-finite ones). */
function asStored(value: number): number | string {
  const f = Math.fround(value)
  if (Number.isNaN(f)) return 'nan'
  if (!Number.isFinite(f)) return f > 0 ? 'inf' : '-inf'
  return f
}

/** Byte offsets of the TFRecord frames of a file (length from each frame's own header). */
function frameOffsets(bytes: Buffer): number[] {
  const offsets: number[] = []
  for (let at = 0; at < bytes.length; at += 12 + Number(bytes.readBigUInt64LE(at)) + 4) offsets.push(at)
  return offsets
}

async function tempDir(t: Test): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'llamapro-tb-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  return dir
}

t.test('CRC-32C: the standard check value, and TFRecord masking as TensorBoard computes it', async (t) => {
  t.equal(crc32c(Buffer.from('123456789')), 0xe3069283)
  t.equal(crc32c(Buffer.alloc(0)), 0)
  const inputs = [0, 1, 3, 7, 8, 9, 15, 16, 17, 31, 64, 255, 1000, 4099].map((n) => randomBytes(n))
  const { masked_crc } = await tensorboardRead(
    [],
    inputs.map((b) => b.toString('hex')),
  )
  for (const bytes of inputs) t.equal(maskedCrc32c(bytes), masked_crc[bytes.toString('hex')], `${bytes.length} bytes`)
  // A range of a larger buffer is checksummed like the same bytes on their own.
  const big = inputs.at(-1)!
  t.equal(crc32c(big, 5, 1012), crc32c(Buffer.from(big.subarray(5, 1012))))
})

t.test('scalars and text read back by TensorBoard: values, steps, wall times, tags, across flushes', async (t) => {
  const dir = await tempDir(t)
  const logDir = join(dir, 'runs', 'Dec07_04-50-00_testhost')
  const now = 1_700_000_000.25
  const writer = await TensorBoardWriter.open(logDir, { hostname: 'testhost', now })
  t.equal(writer.path, join(logDir, 'events.out.tfevents.1700000000.testhost'))
  t.ok((await stat(writer.path)).size > 0, 'the file exists, with its first event, as soon as open() returns')

  const args = JSON.stringify({ output_dir: 'saves/llama-pro', learning_rate: 1e-4, note: 'é 日本語 🚀' }, null, 2)
  const longText = `# Long\n\n${'lorem ipsum '.repeat(2000)}`
  // Values TensorBoard must keep as float32: tiny, huge, negative zero, not-a-number, infinity, and a value that
  // rounds. Steps with 1- to 6-byte varints. Tags in UTF-8.
  const batches: { step: number; wallTime: number; scalars: Record<string, number> }[] = [
    { step: 1, wallTime: now + 0.5, scalars: { 'train/loss': 2.3456789, 'train/lr': 3e-5, 'train/epoch': 0.1 } },
    {
      step: 127,
      wallTime: now + 1.123456789,
      scalars: { 'train/loss': 1e-30, 'grad_norm/layer_3': 3.4e38, 'train/épsilon': -0 },
    },
    { step: 128, wallTime: now + 2.000001, scalars: { 'train/loss': Number.NaN, 'train/grad_norm': -Infinity } },
    { step: 300, wallTime: now + 3, scalars: { 'train/loss': 1 / 3, 'eval/loss': -1.5 } },
    { step: 2 ** 40 + 3, wallTime: now + 4, scalars: { 'train/loss': 0.125 } },
  ]
  const snapshots: { path: string; batches: number; texts: number }[] = []
  const snapshot = async (batches: number, texts: number) => {
    await writer.flush()
    // EventAccumulator takes a path for an events file only when its name holds "tfevents".
    const path = join(dir, `events.out.tfevents.snapshot-${snapshots.length}`)
    await copyFile(writer.path, path)
    snapshots.push({ path, batches, texts })
  }

  await snapshot(0, 0)
  writer.addText('args', args, 0, now + 0.1)
  writer.addScalars(batches[0]!.scalars, batches[0]!.step, batches[0]!.wallTime)
  await snapshot(1, 1)
  for (const { step, wallTime, scalars } of batches.slice(1, 3)) {
    for (const [tag, value] of Object.entries(scalars)) writer.addScalar(tag, value, step, wallTime)
  }
  await snapshot(3, 1)
  await snapshot(3, 1) // a flush with nothing new appends nothing
  for (const { step, wallTime, scalars } of batches.slice(3)) writer.addScalars(scalars, step, wallTime)
  writer.addText('notes', longText, 300, now + 3.5)
  writer.addScalars({}, 301) // nothing to write: no event
  await writer.close()
  await writer.close()
  t.throws(() => writer.addScalar('train/loss', 1, 400), { message: `TensorBoard writer for ${writer.path} is closed` })

  const read = await tensorboardRead([...snapshots.map((s) => s.path), writer.path])
  const sizes = await Promise.all(snapshots.map(async (s) => (await stat(s.path)).size))
  t.ok(sizes[1]! > sizes[0]! && sizes[2]! > sizes[1]! && sizes[3] === sizes[2], `each flush appended (${sizes})`)
  t.ok((await stat(writer.path)).size > sizes[3]!)

  const expectedScalars = (upTo: number) => {
    const out: Record<string, [number, number, number | string][]> = {}
    for (const { step, wallTime, scalars } of batches.slice(0, upTo)) {
      for (const [tag, value] of Object.entries(scalars)) (out[tag] ??= []).push([wallTime, step, asStored(value)])
    }
    return out
  }
  for (const [i, s] of [...snapshots, { path: writer.path, batches: batches.length, texts: 2 }].entries()) {
    const file = read.files[s.path]!
    t.equal(file.error, null, `snapshot ${i}: every record passes TensorBoard's CRC checks`)
    t.ok(
      file.records.every((r) => r.canonical),
      `snapshot ${i}: protobuf re-encodes every event to the same bytes`,
    )
    t.same(file.records[0], { wall_time: now, step: 0, file_version: EVENT_FILE_VERSION, values: [], canonical: true })
    t.equal(file.accumulator.file_version, 2)
    const expected = expectedScalars(s.batches)
    t.same(file.accumulator.scalar_tags, Object.keys(expected).sort(), `snapshot ${i}: scalar tags`)
    t.strictSame(file.accumulator.scalars, expected, `snapshot ${i}: wall times, steps and float32 values`)
    t.equal(file.accumulator.text_tags.length, s.texts)
  }

  const final = read.files[writer.path]!
  t.equal(final.records.length, 1 + 1 + 1 + 3 + 2 + 2 + 1, 'one event per addScalar/addScalars/addText call')
  const texts = final.records.flatMap((r) => r.values.filter((v) => v.kind === 'tensor'))
  t.strictSame(
    texts.map((v) => [v.tag, v.plugin, v.dtype, v.shape, v.strings, v.same_bytes_as_text_pb]),
    [
      ['args', 'text', 7, [], [args], true],
      ['notes', 'text', 7, [], [longText], true],
    ],
    "text summaries are what TensorBoard's own text_pb writes",
  )
  const argsText = final.accumulator.texts.args!
  t.same(
    argsText.map((e) => [e.wall_time, e.step]),
    [[now + 0.1, 0]],
  )
  const rendered = /^<p>\{\n {2}"output_dir": "saves\/llama-pro",[\s\S]*"note": "é 日本語 🚀"\n\}<\/p>$/
  t.match(argsText[0]!.html, rendered, 'the Text tab renders it')
  t.match(final.accumulator.texts.notes![0]!.html, /^<h1>Long<\/h1>\n<p>lorem ipsum lorem/, 'markdown rendered')
})

t.test("a damaged byte fails TensorBoard's CRC check; the records before it still load", async (t) => {
  const dir = await tempDir(t)
  const writer = await TensorBoardWriter.open(dir, { hostname: 'h', now: 1_700_000_000 })
  for (let step = 1; step <= 4; step++) {
    writer.addScalars({ 'train/loss': step / 10, 'train/lr': step }, step, 1_700_000_000 + step)
  }
  await writer.close()
  const bytes = await readFile(writer.path)
  const frames = frameOffsets(bytes)
  t.equal(frames.length, 5)
  t.equal(frames.at(-1)! + 12 + Number(bytes.readBigUInt64LE(frames.at(-1)!)) + 4, bytes.length, 'frames tile the file')

  const payloadDamaged = join(dir, 'events.out.tfevents.payload-damaged')
  const damaged = Buffer.from(bytes)
  damaged[frames[3]! + 12 + 5]! ^= 0x01 // one bit of the third scalar event's payload
  await writeFile(payloadDamaged, damaged)
  const lengthDamaged = join(dir, 'events.out.tfevents.length-damaged')
  const damagedLength = Buffer.from(bytes)
  damagedLength[frames[2]!]! ^= 0x04 // the second scalar event's length
  await writeFile(lengthDamaged, damagedLength)
  // Our own check of the frames agrees with TensorBoard's on where the damage is.
  const firstBadFrame = (b: Buffer) =>
    frames.findIndex((at) => {
      const n = Number(b.readBigUInt64LE(at))
      const lengthOk = maskedCrc32c(b, at, at + 8) === b.readUInt32LE(at + 8)
      return !lengthOk || maskedCrc32c(b, at + 12, at + 12 + n) !== b.readUInt32LE(at + 12 + n)
    })
  t.equal(firstBadFrame(bytes), -1)
  t.equal(firstBadFrame(damaged), 3)
  t.equal(firstBadFrame(damagedLength), 2)

  const read = await tensorboardRead([writer.path, payloadDamaged, lengthDamaged])
  t.equal(read.files[writer.path]!.error, null)
  t.equal(read.files[writer.path]!.records.length, 5)
  const payload = read.files[payloadDamaged]!
  t.match(payload.error, /failed event crc32 check/)
  t.equal(payload.records.length, 3)
  t.same(
    payload.accumulator.scalars['train/loss']!.map((e) => e[1]),
    [1, 2],
    'the accumulator stops at the damage',
  )
  const length = read.files[lengthDamaged]!
  t.match(length.error, /failed header crc32 check/)
  t.equal(length.records.length, 2)
})

t.test('two writers in one folder and second get two files; neither clobbers the other', async (t) => {
  const dir = await tempDir(t)
  const options = { hostname: 'samehost', now: 1_700_000_123.9 }
  const writers = await Promise.all([0, 1, 2].map(() => TensorBoardWriter.open(dir, options)))
  const base = join(dir, 'events.out.tfevents.1700000123.samehost')
  t.same(writers.map((w) => w.path).sort(), [base, `${base}.${process.pid}.1`, `${base}.${process.pid}.2`])
  writers.forEach((w, i) => w.addScalar('train/loss', i + 0.5, 10 + i, 1_700_000_124))
  await Promise.all(writers.map((w) => w.close()))
  const read = await tensorboardRead(writers.map((w) => w.path))
  writers.forEach((w, i) => {
    t.strictSame(read.files[w.path]!.accumulator.scalars, { 'train/loss': [[1_700_000_124, 10 + i, i + 0.5]] })
  })
})

t.test('events are appended by the timer and by the size threshold, without flush()', async (t) => {
  const dir = await tempDir(t)
  const untilGrows = async (path: string, size: number) => {
    for (let i = 0; i < 500 && (await stat(path)).size === size; i++) await new Promise((r) => setTimeout(r, 10))
    return (await stat(path)).size
  }

  const timed = await TensorBoardWriter.open(join(dir, 'timed'), { flushIntervalMs: 30 })
  const timedSize = (await stat(timed.path)).size
  timed.addScalar('train/loss', 1.5, 1)
  t.equal(statSync(timed.path).size, timedSize, 'adding does not write') // sync: the timer cannot run in between
  t.ok((await untilGrows(timed.path, timedSize)) > timedSize, 'the timer appended the event')

  // 50 scalars a step, well past the 64 KiB the buffer starts with: it grows, and appends start at 4 KiB.
  const sized = await TensorBoardWriter.open(join(dir, 'sized'), { flushIntervalMs: 600_000, maxPendingBytes: 4096 })
  const sizedSize = (await stat(sized.path)).size
  const perStep = Object.fromEntries(Array.from({ length: 50 }, (_, i) => [`grad_norm/layer_${i}`, i / 7]))
  for (let step = 1; step <= 300; step++) sized.addScalars(perStep, step)
  t.ok((await untilGrows(sized.path, sizedSize)) > sizedSize, 'the size threshold started an append')

  await Promise.all([timed.close(), sized.close()])
  const read = await tensorboardRead([timed.path, sized.path])
  t.strictSame(
    read.files[timed.path]!.accumulator.scalars['train/loss']!.map((e) => [e[1], e[2]]),
    [[1, 1.5]],
  )
  const sizedRead = read.files[sized.path]!
  t.equal(sizedRead.error, null)
  t.equal(sizedRead.accumulator.scalar_tags.length, 50)
  const layer7 = sizedRead.accumulator.scalars['grad_norm/layer_7']!
  t.same([layer7.length, layer7[0]![1], layer7.at(-1)![1], layer7.at(-1)![2]], [300, 1, 300, Math.fround(1)])
})

t.test('a failed append is thrown once, by flush() or close(), naming the file; never unhandled', async (t) => {
  const dir = await tempDir(t)
  const child = join(REPO_ROOT, 'test', 'helpers', 'tensorboard-write-error.ts')
  // The child caps its file size at 1 KiB, so appending an 8 KiB event fails (EFBIG), like a full disk.
  const run = async (mode: string) => {
    const { stdout } = await promisify(execFile)(process.execPath, ['--import', 'tsx', child, join(dir, mode), mode], {
      cwd: REPO_ROOT,
      timeout: 60_000,
    })
    return JSON.parse(stdout) as Record<string, string | null | string[]> & { path: string }
  }
  const flushed = await run('flush')
  const message = `cannot append to the TensorBoard event file ${flushed.path}: EFBIG: file too large, write`
  t.same(flushed, {
    path: flushed.path,
    firstFlush: message,
    secondFlush: null,
    close: null,
    closeAgain: null,
    unhandled: [],
  })
  const timed = await run('timer')
  t.same(timed, {
    path: timed.path,
    firstFlush: null,
    secondFlush: null,
    close: `cannot append to the TensorBoard event file ${timed.path}: EFBIG: file too large, write`,
    closeAgain: null,
    unhandled: [],
  })
  // What was appended before the failure is still readable.
  const read = await tensorboardRead([flushed.path])
  t.equal(read.files[flushed.path]!.records[0]!.file_version, EVENT_FILE_VERSION)
})

t.test('bad arguments get errors that name the value', async (t) => {
  const dir = await tempDir(t)
  const aFile = join(dir, 'a-file')
  await writeFile(aFile, '')
  const opening = (logDir: string, options?: TensorBoardWriterOptions) => TensorBoardWriter.open(logDir, options)
  const underAFile = new RegExp(`^cannot create the TensorBoard log folder ${aFile}/runs: `)
  await t.rejects(opening(join(aFile, 'runs')), { message: underAFile })
  await t.rejects(opening(dir, { hostname: 'x'.repeat(300) }), {
    message: /^cannot create the TensorBoard event file .*x{300}: ENAMETOOLONG/,
  })
  await t.rejects(opening(dir, { hostname: 'a/b' }), { message: /hostname "a\/b" cannot be part of a file name/ })
  await t.rejects(opening(dir, { hostname: '' }), { message: /hostname "" cannot/ })
  await t.rejects(opening(dir, { now: -1 }), { message: 'TensorBoard writer: now must be Unix seconds, got -1' })
  await t.rejects(opening(dir, { flushIntervalMs: 0 }), { message: /flushIntervalMs must be > 0, got 0/ })
  await t.rejects(opening(dir, { maxPendingBytes: Number.NaN }), { message: /maxPendingBytes must be > 0, got NaN/ })

  const writer = await TensorBoardWriter.open(dir)
  t.match(basename(writer.path), /^events\.out\.tfevents\.\d{10}\./)
  t.throws(() => writer.addScalar('train/loss', 1, -1), {
    name: 'RangeError',
    message: 'TensorBoard step must be a non-negative integer, got -1',
  })
  t.throws(() => writer.addScalar('train/loss', 1, 1.5), { name: 'RangeError' })
  t.throws(() => writer.addScalars({ 'train/loss': 1, 'train/lr': '3e-5' as unknown as number }, 1), {
    name: 'TypeError',
    message: 'TensorBoard scalar "train/lr": value must be a number, got string',
  })
  const emptyTag = { name: 'TypeError', message: 'TensorBoard tag must be a non-empty string' }
  t.throws(() => writer.addScalar('', 1, 1), emptyTag)
  t.throws(() => writer.addText('args', { a: 1 } as unknown as string, 1), {
    name: 'TypeError',
    message: 'TensorBoard text "args": must be a string',
  })
  await writer.close()
  const read = await tensorboardRead([writer.path])
  t.equal(read.files[writer.path]!.records.length, 1, 'rejected calls wrote nothing, not even part of an event')
})

t.test("defaultLoggingDir is transformers' runs/<Mon><DD>_<HH>-<MM>-<SS>_<host>", async (t) => {
  const january = new Date(2026, 0, 5, 4, 3, 9)
  t.equal(defaultLoggingDir('saves/run', january, 'gpu-box'), join('saves/run', 'runs', 'Jan05_04-03-09_gpu-box'))
  t.equal(defaultLoggingDir('out', new Date(2026, 11, 31, 23, 59, 58), 'h'), join('out', 'runs', 'Dec31_23-59-58_h'))
  t.equal(dirname(defaultLoggingDir('out')), join('out', 'runs'))
})

t.test("tensorboardScalars: trainer_log.jsonl lines to transformers' tags", async (t) => {
  // Lines as llamapro's trainer writes them (LLaMA-Factory's LogCallback fields plus llamapro's).
  const training = {
    current_steps: 40,
    total_steps: 1000,
    loss: 1.9021,
    lr: 4.8e-5,
    epoch: 0.12,
    percentage: 4,
    elapsed_time: '0:01:02',
    remaining_time: '0:24:48',
    throughput: 5123.4,
    total_tokens: 327680,
    grad_norm: 0.873,
    tokens_per_second: 5120.5,
    elapsed_seconds: 62.4,
    layer_grad_norms: { '4': 0.51, '9': 0.43, '39': 0.12, lm_head: 0.2 },
    allreduce_bytes: 1024,
  }
  t.strictSame(tensorboardScalars(training), {
    'train/loss': 1.9021,
    'train/learning_rate': 4.8e-5,
    'train/epoch': 0.12,
    'train/throughput': 5123.4,
    'train/total_tokens': 327680,
    'train/grad_norm': 0.873,
    'train/tokens_per_second': 5120.5,
    'grad_norm/layer_4': 0.51,
    'grad_norm/layer_9': 0.43,
    'grad_norm/layer_39': 0.12,
    'grad_norm/lm_head': 0.2,
    'train/allreduce_bytes': 1024,
  })
  const evaluation = {
    current_steps: 100,
    total_steps: 1000,
    eval_loss: 1.75,
    epoch: 0.3,
    percentage: 10,
    elapsed_time: '0:02:30',
    remaining_time: '0:22:30',
  }
  t.strictSame(tensorboardScalars(evaluation), { 'eval/loss': 1.75 })
  const eachDataset = {
    current_steps: 100,
    total_steps: 1000,
    eval_alpaca_en_loss: 1.8,
    eval_code_loss: 1.2,
    eval_runtime: 3.5,
    epoch: 0.3,
  }
  t.strictSame(tensorboardScalars(eachDataset), {
    'eval/alpaca_en_loss': 1.8,
    'eval/code_loss': 1.2,
    'eval/runtime': 3.5,
  })
  // A NaN loss reaches the JSON line as null: nothing to plot, nothing written. Inherited names are not renames.
  const withNulls = { current_steps: 3, loss: null, constructor: 2, layer_grad_norms: null }
  t.strictSame(tensorboardScalars(withNulls), { 'train/constructor': 2 })
  const oddNorms = { loss: 1, layer_grad_norms: { '0': 'x', '1': 2 } }
  t.strictSame(tensorboardScalars(oddNorms), { 'train/loss': 1, 'grad_norm/layer_1': 2 })

  // Written with the line's step and read back by TensorBoard: the tags it lists are exactly these.
  const dir = await tempDir(t)
  const writer = await TensorBoardWriter.open(dir)
  for (const line of [training, evaluation, eachDataset]) {
    writer.addScalars(tensorboardScalars(line), line.current_steps)
  }
  await writer.close()
  const read = await tensorboardRead([writer.path])
  const acc = read.files[writer.path]!.accumulator
  const evalTags = ['eval/loss', 'eval/alpaca_en_loss', 'eval/code_loss', 'eval/runtime']
  t.same(acc.scalar_tags, [...Object.keys(tensorboardScalars(training)), ...evalTags].sort())
  t.same(
    acc.scalars['eval/loss']!.map((e) => [e[1], e[2]]),
    [[100, 1.75]],
  )
  t.same(
    acc.scalars['grad_norm/layer_39']!.map((e) => [e[1], e[2]]),
    [[40, Math.fround(0.12)]],
  )
})

t.test('a running TensorBoard (its Rust data server) shows the run, and events appended while it runs', async (t) => {
  const dir = await tempDir(t)
  const writer = await TensorBoardWriter.open(join(dir, 'runs', 'live'), { hostname: 'h' })
  const args = '{\n  "learning_rate": 0.0001\n}'
  writer.addText('args', args, 0, 1_700_000_000)
  writer.addScalars({ 'train/loss': 2.5, 'grad_norm/layer_3': 0.25 }, 1, 1_700_000_001)
  await writer.flush()

  const server = spawn(
    pythonPath(),
    ['-m', 'tensorboard.main', '--logdir', dir, '--port', '0', '--load_fast=true', '--reload_interval', '1'],
    { cwd: REPO_ROOT, stdio: ['ignore', 'ignore', 'pipe'] },
  )
  t.teardown(() => void server.kill())
  let log = ''
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`TensorBoard did not start in 120 s:\n${log}`)), 120_000)
    server.stderr!.on('data', (chunk: Buffer) => {
      log += chunk.toString()
      const found = /TensorBoard [\d.]+ at (http:\/\/[^/\s]+)\//.exec(log)
      if (found) {
        clearTimeout(timer)
        resolve(found[1]!)
      }
    })
    server.on('exit', (code) => reject(new Error(`TensorBoard exited (${code}):\n${log}`)))
  })
  /** Asks the server until `ready` accepts its answer (it re-reads the folder every second). */
  const poll = async <T>(path: string, ready: (body: T) => boolean): Promise<T> => {
    let body: T | undefined
    for (let i = 0; i < 600; i++) {
      const response = await fetch(`${url}${path}`)
      if (response.ok) {
        body = (await response.json()) as T
        if (ready(body)) return body
      }
      await new Promise((r) => setTimeout(r, 100))
    }
    throw new Error(`TensorBoard's ${path} did not become ready; last answer ${JSON.stringify(body)}\n${log}`)
  }
  type Points = [number, number, number][]
  const run = 'runs/live'
  const query = (tag: string) => `run=${encodeURIComponent(run)}&tag=${encodeURIComponent(tag)}`
  const scalars = (tag: string) => `/data/plugin/scalars/scalars?${query(tag)}`
  const environment = await poll<{ debug: { data_provider: string } }>('/data/environment', () => true)
  t.match(environment.debug.data_provider, /^GrpcDataProvider/, 'the Rust data server reads the files')
  t.same(await poll<string[]>('/data/runs', (runs) => runs.includes(run)), [run])
  t.same(await poll<Points>(scalars('train/loss'), (p) => p.length === 1), [[1_700_000_001, 1, 2.5]])
  type Texts = { step: number; text: string }[]
  const text = await poll<Texts>(`/data/plugin/text/text?${query('args')}`, (entries) => entries.length === 1)
  t.same(
    text.map((e) => e.step),
    [0],
  )
  t.match(text[0]!.text, '"learning_rate": 0.0001')

  // Appended while the server watches: it picks them up from the same file.
  writer.addScalars({ 'train/loss': 2.25, 'grad_norm/layer_3': 0.5 }, 2, 1_700_000_002)
  writer.addScalar('train/loss', 2, 3, 1_700_000_003)
  await writer.flush()
  const later = await poll<Points>(scalars('train/loss'), (p) => p.length === 3)
  t.same(
    later.map((p) => [p[1], p[2]]),
    [
      [1, 2.5],
      [2, 2.25],
      [3, 2],
    ],
  )
  const layer = await poll<Points>(scalars('grad_norm/layer_3'), (p) => p.length === 2)
  t.same(
    layer.map((p) => [p[1], p[2]]),
    [
      [1, 0.25],
      [2, 0.5],
    ],
  )
  await writer.close()
})

t.test('the writer opens in a folder that exists already', async (t) => {
  const dir = await tempDir(t)
  await mkdir(join(dir, 'runs'), { recursive: true })
  const writer = await TensorBoardWriter.open(join(dir, 'runs'), { hostname: 'h', now: 1 })
  t.equal(writer.path, join(dir, 'runs', 'events.out.tfevents.1.h'))
  await writer.close()
})
