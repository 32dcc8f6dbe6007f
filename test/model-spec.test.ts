// The model contract (lib/checkpoint/model-contract.ts) declares the spec's fields and limits once: lib/ builds the
// spec and bounds config.json from it (CONFIG_LIMITS), and the addon gets it at load and checks every spec against it
// again before it allocates (native/model_contract.cc). These tests keep the two sides from drifting apart: every
// field lib/ sends is one the addon requires, every limit + 1 reaches the addon only to be refused with the same
// number, and an addon whose fields differ from the contract refuses it.
import t from 'tap'
import { execFileSync } from 'node:child_process'
import { CONFIG_LIMITS, parseModelConfig } from '../lib/checkpoint/config.js'
import {
  MAX_POSITION_EMBEDDINGS_LIMIT,
  MODEL_SIZE_FIELDS,
  type NativeModelSpec,
  nativeModelContract,
} from '../lib/checkpoint/model-contract.js'
import { nativeSpec } from '../lib/model/native-spec.js'
import { addonPath, native } from '../lib/native/load.js'
import { tinyRawConfig } from './helpers/tiny-model.js'

const OPTIONS = { device: 'cpu', dtype: 'float32' }
const spec = (): NativeModelSpec => nativeSpec(parseModelConfig(tinyRawConfig(), 'config.json'))
const create = (s: unknown) => native().NativeModel.create(s as NativeModelSpec, OPTIONS)

t.test(
  'each contract limit + 1 is refused by lib/ and by the native constructor, naming the field and limit',
  async (t) => {
    for (const [field, { configKey, max: limit }] of Object.entries(MODEL_SIZE_FIELDS)) {
      t.equal(CONFIG_LIMITS[configKey], limit, `CONFIG_LIMITS.${configKey} is the contract's ${field} limit`)
      t.throws(
        () => parseModelConfig({ ...tinyRawConfig(), [configKey]: limit + 1 }, 'config.json'),
        { message: new RegExp(`"${configKey}" is ${limit + 1}, above the largest llamapro supports \\(${limit}\\)`) },
        `lib/ refuses ${configKey} = ${limit} + 1`,
      )
      const over = { ...spec(), [field]: limit + 1 }
      t.throws(() => create(over), {
        name: 'TypeError',
        message:
          `spec.${field} is ${limit + 1}, above llamapro's limit ${limit} (the model contract, ` +
          `lib/checkpoint/model-contract.ts)`,
      })
      // At the limit the size check passes: the next check (a bad rope type, read after the sizes) is what fails, so
      // nothing of the limit's size is allocated.
      const at = { ...spec(), [field]: limit, rope: { ...spec().rope, type: 'not-a-rope' } }
      t.throws(
        () => create(at),
        {
          name: 'TypeError',
          message:
            /spec\.rope\.type must be default, linear or llama3|spec\.numHeads must be a multiple|spec\.slidingWindows must have one entry per layer/,
        },
        `spec.${field} = ${limit} passes the size check`,
      )
    }
    // max_position_embeddings bounds lib/ only (the addon has no position table).
    const keys = [...Object.values(MODEL_SIZE_FIELDS).map((f) => f.configKey), 'max_position_embeddings']
    t.same(Object.keys(CONFIG_LIMITS).sort(), keys.sort(), 'every config limit is a contract field')
    t.equal(CONFIG_LIMITS.max_position_embeddings, MAX_POSITION_EMBEDDINGS_LIMIT)
  },
)

t.test('an addon whose fields differ from the contract refuses it; the limits are set once', async (t) => {
  const binding = native()
  const contract = nativeModelContract()
  t.doesNotThrow(() => binding.setModelContract(contract), 'the same contract again is accepted')
  const refused = (change: Partial<typeof contract>) => () => binding.setModelContract({ ...contract, ...change })
  t.throws(refused({ sizes: { ...contract.sizes, slidingWindowSize: 10 } as typeof contract.sizes }), {
    name: 'TypeError',
    message: new RegExp(
      '^the model contract \\(lib/checkpoint/model-contract\\.ts\\) lists size fields \\{.*slidingWindowSize.*\\} ' +
        'but this addon reads \\{headDim, .*\\}: rebuild the addon',
    ),
  })
  t.throws(refused({ flags: contract.flags.filter((f) => f !== 'mlpBias') }), {
    message:
      /lists flags \{oBias, qkvBias, tieWordEmbeddings\} but this addon reads \{mlpBias, oBias, qkvBias, tieWordEmbeddings\}/,
  })
  t.throws(refused({ ropeTypes: [...contract.ropeTypes, 'yarn'] }), {
    message: /lists rope types \{default, linear, llama3, yarn\} but this addon reads \{default, linear, llama3\}/,
  })
  t.throws(refused({ ropeNumbers: contract.ropeNumbers.slice(1) }), { message: /lists rope numbers/ })
  t.throws(refused({ sizes: { ...contract.sizes, numLayers: 1 << 20 } }), {
    name: 'TypeError',
    message: 'the model contract is set once, when the addon loads',
  })
  t.throws(refused({ sizes: { ...contract.sizes, numLayers: -1 } }), {
    name: 'RangeError',
    message: /numLayers must be between 1 and 2\^31/,
  })
  t.throws(
    () => create({ ...spec(), numLayers: 4097 }),
    { message: /limit 4096/ },
    "the limits held are still the contract's",
  )
})

t.test('an addon loaded without the contract refuses every spec', async (t) => {
  const script = `const addon = require(${JSON.stringify(addonPath())})
try {
  addon.NativeModel.create(${JSON.stringify(spec())}, { device: 'cpu', dtype: 'float32' })
  console.log('created')
} catch (e) {
  console.log(e.message)
}`
  const out = execFileSync(process.execPath, ['-e', script], { encoding: 'utf8' }).trim()
  t.equal(out, "spec: the model contract was not given (load the addon through llamapro's lib/native/load.ts)")
})

t.test(
  'every field lib/ sends in the spec is one the addon reads (dropping it is a TypeError naming it)',
  async (t) => {
    const full = spec()
    for (const field of Object.keys(full) as (keyof NativeModelSpec)[]) {
      const { [field]: _dropped, ...rest } = full
      t.throws(
        () => create(rest),
        { name: 'TypeError', message: new RegExp(`^spec\\.${field} must be`) },
        `without spec.${field}`,
      )
    }
    for (const field of Object.keys(full.rope)) {
      const { [field as keyof typeof full.rope]: _dropped, ...rope } = full.rope
      t.throws(
        () => create({ ...full, rope }),
        { name: 'TypeError', message: new RegExp(`^spec\\.rope\\.${field} must be`) },
        `without spec.rope.${field}`,
      )
    }
    const model = await create(full)
    t.equal(model.parameters().length > 0, true, 'the complete spec creates a model')
    model.dispose()
  },
)

t.test(
  'a NativeModel is only made by NativeModel.create; bad devices are refused before any work starts',
  async (t) => {
    const Ctor = native().NativeModel as unknown as new (...args: unknown[]) => unknown
    t.throws(() => new Ctor(spec(), OPTIONS), {
      name: 'TypeError',
      message: /a NativeModel is made by NativeModel\.create\(spec, options\)/,
    })
    t.throws(() => new Ctor({}), { name: 'TypeError', message: /NativeModel\.create/ })
    t.throws(() => native().NativeModel.create(spec(), { device: 'cuda:x', dtype: 'float32' }), {
      message: /device must be 'cpu', 'cuda' or 'cuda:<n>', got 'cuda:x'/,
    })
    t.throws(() => native().NativeModel.create(spec(), { device: 'cpu', dtype: 'float64' }), {
      name: 'TypeError',
      message: /dtype must be float32, bfloat16 or float16/,
    })
  },
)
