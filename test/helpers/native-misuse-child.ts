// Child process of test/native-misuse.test.ts: calls the addon's methods with wrong native objects and bad sizes,
// printing one JSON line when a case starts and one when it ends, so that a crash or hang shows up in the parent as
// a missing line (naming the case) rather than taking the test runner down.
import { LlamaModel } from '../../lib/index.js'
import { native } from '../../lib/native/load.js'
import { tinyRawConfig } from './tiny-model.js'

type Case = [
  name: string,
  call: () => unknown,
  expected: { type: 'TypeError' | 'RangeError' | 'Error'; message: RegExp },
]

const REPEATS = 50

const model = await LlamaModel.random(tinyRawConfig(), { seed: 1 })
const other = await LlamaModel.random(tinyRawConfig(), { seed: 2 })
const addon = native()
const cache = new addon.NativeKvCache(other.native)
const group = new addon.NativeProcessGroup()
const pairs: [string, string][] = [['model.norm.weight', 'model.norm.weight']]
const forgedModel = Object.create(addon.NativeModel.prototype) as object
const options = {
  lossMultiplier: 1,
  update: false,
  lr: 1e-3,
  beta1: 0.9,
  beta2: 0.999,
  eps: 1e-8,
  weightDecay: 0,
  maxGradNorm: 1,
  reportParamNorms: false,
}
const ids = (n: number) => new Int32Array(n)
const m = model.native as unknown as Record<string, (...args: unknown[]) => unknown>

const foreign: [string, unknown][] = [
  ['a NativeKvCache', cache],
  ['a NativeProcessGroup', group],
  ['a plain object', {}],
  ['an object made from NativeModel.prototype', forgedModel],
  ['a number', 42],
  ['null', null],
]
const cases: Case[] = []
for (const [what, value] of foreign) {
  cases.push([
    `maxAbsDifference(${what})`,
    () => m.maxAbsDifference!(value, pairs),
    { type: 'TypeError', message: /other must be a NativeModel/ },
  ])
  cases.push([
    `new NativeKvCache(${what})`,
    () => new addon.NativeKvCache(value as never),
    { type: 'TypeError', message: /model must be a NativeModel/ },
  ])
}
for (const [what, value] of [
  ['a NativeModel', other.native],
  ['a NativeKvCache', cache],
  ['a plain object', {}],
  ['a number', 7],
] as [string, unknown][]) {
  cases.push([
    `attachProcessGroup(${what})`,
    () => m.attachProcessGroup!(value),
    { type: 'TypeError', message: /group must be a NativeProcessGroup/ },
  ])
}

// [batch, seq, ids length, expected]
const shapes: [number, number, number, Case[2]][] = [
  [2 ** 32, 2 ** 32, 0, { type: 'RangeError', message: /batch \* seq overflows/ }],
  [2 ** 40, 2 ** 30, 0, { type: 'RangeError', message: /batch \* seq overflows/ }],
  [2 ** 53 - 1, 2 ** 11, 4, { type: 'RangeError', message: /batch \* seq overflows/ }],
  [2 ** 53 - 1, 2, 4, { type: 'TypeError', message: /ids holds 4 values, batch \* seq is 18014398509481982/ }],
  [-1, 4, 4, { type: 'RangeError', message: /batch must be positive \(got -1\)/ }],
  [1, -4, 4, { type: 'RangeError', message: /seq must be positive \(got -4\)/ }],
  [0, 4, 0, { type: 'RangeError', message: /batch must be positive/ }],
  [NaN, 4, 4, { type: 'TypeError', message: /batch must be a number|batch must be finite/ }],
  [1, Infinity, 4, { type: 'TypeError', message: /seq must be finite/ }],
  [1.5, 4, 4, { type: 'TypeError', message: /batch must be an integer/ }],
  [2 ** 20, 2 ** 20, 4, { type: 'TypeError', message: /ids holds 4 values, batch \* seq is 1099511627776/ }],
  [2, 4, 7, { type: 'TypeError', message: /ids holds 7 values, batch \* seq is 8/ }],
  [1, 1, 0, { type: 'TypeError', message: /ids holds 0 values/ }],
]
for (const [batch, seq, n, expected] of shapes) {
  const shape = `batch ${batch}, seq ${seq}, ${n} ids`
  cases.push([`forward(${shape})`, () => m.forward!(ids(n), batch, seq), expected])
  cases.push([`loss(${shape})`, () => m.loss!(ids(n), ids(n), batch, seq), expected])
  cases.push([`trainStep(${shape})`, () => m.trainStep!(ids(n), ids(n), batch, seq, options), expected])
}
cases.push([
  'loss(short labels)',
  () => m.loss!(ids(8), ids(7), 2, 4),
  { type: 'TypeError', message: /labels holds 7 values, batch \* seq is 8/ },
])
cases.push([
  'trainStep(Float32Array ids)',
  () => m.trainStep!(new Float32Array(8), ids(8), 2, 4, options),
  { type: 'TypeError', message: /ids must be an Int32Array/ },
])
cases.push([
  'forward(plain array ids)',
  () => m.forward!([1, 2], 1, 2),
  { type: 'TypeError', message: /ids must be an Int32Array/ },
])

const NativeModelClass = addon.NativeModel as unknown as (new (
  ...args: unknown[]
) => unknown) & { create: (...args: unknown[]) => unknown }
cases.push([
  'new NativeModel(spec, options)',
  () => new NativeModelClass({}, { device: 'cpu', dtype: 'float32' }),
  { type: 'TypeError', message: /a NativeModel is made by NativeModel\.create/ },
])
cases.push([
  'new NativeModel(a NativeModel)',
  () => new NativeModelClass(other.native),
  { type: 'TypeError', message: /a NativeModel is made by NativeModel\.create/ },
])
cases.push([
  'NativeModel.create({}, options)',
  () => NativeModelClass.create({}, { device: 'cpu', dtype: 'float32' }),
  { type: 'TypeError', message: /spec\.vocabSize must be a number/ },
])
cases.push([
  'NativeModel.create(spec, null)',
  () => NativeModelClass.create(other.native, null),
  { type: 'TypeError', message: /spec\.vocabSize must be a number/ },
])
cases.push([
  'NativeModel.create(spec, 1 << 30 layers)',
  () =>
    NativeModelClass.create(
      { vocabSize: 8, hiddenSize: 8, intermediateSize: 8, numLayers: 2 ** 30, numHeads: 1, numKvHeads: 1, headDim: 8 },
      {},
    ),
  { type: 'TypeError', message: /spec\.numLayers is 1073741824, above llamapro's limit 4096/ },
])

const c = cache as unknown as Record<string, (...args: unknown[]) => unknown>
cases.push([
  'kvCache.step(empty Int32Array)',
  () => c.step!(ids(0), false),
  { type: 'TypeError', message: /ids must hold 1\.\.\d+ token ids/ },
])
cases.push([
  'kvCache.step(Float32Array)',
  () => c.step!(new Float32Array(2), false),
  { type: 'TypeError', message: /ids must be an Int32Array/ },
])
cases.push([
  'kvCache.step(id outside the vocabulary)',
  () => c.step!(Int32Array.of(-5), false),
  { type: 'Error', message: /token id -5 at position 0 is outside the vocabulary/ },
])
cases.push([
  'kvCache.truncate(-1)',
  () => c.truncate!(-1),
  { type: 'Error', message: /truncate: length -1 is outside 0\.\.0/ },
])
cases.push([
  'kvCache.truncate(NaN)',
  () => c.truncate!(NaN),
  { type: 'TypeError', message: /length must be finite|length must be a number/ },
])
cases.push([
  'kvCache.truncate(2 ** 53)',
  () => c.truncate!(2 ** 53),
  { type: 'TypeError', message: /length must be an integer/ },
])
cases.push([
  'forward(id outside the vocabulary)',
  () => m.forward!(Int32Array.of(0, 1 << 30), 1, 2),
  { type: 'Error', message: /token id 1073741824 at position 1 is outside the vocabulary/ },
])

function report(line: Record<string, unknown>): void {
  process.stdout.write(`${JSON.stringify(line)}\n`)
}

for (const [name, call, expected] of cases) {
  report({ case: name, event: 'start' })
  const seen = new Set<string>()
  let resolved = 0
  for (let i = 0; i < REPEATS; i++) {
    try {
      await call()
      resolved++
    } catch (error) {
      const e = error as Error
      seen.add(`${e.constructor?.name ?? typeof error}: ${e.message}`)
    }
  }
  const errors = [...seen]
  const ok =
    resolved === 0 &&
    errors.length === 1 &&
    errors[0]!.startsWith(`${expected.type}: `) &&
    expected.message.test(errors[0]!)
  report({ case: name, event: 'end', ok, resolved, errors, expected: `${expected.type} ${expected.message}` })
}
cache.dispose()
model.dispose()
other.dispose()
report({ event: 'done', cases: cases.length })
