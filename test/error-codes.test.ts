/**
 * Error codes: one list (lib/error-codes.ts) that lib/ is typed against and native/ draws from; native errors get
 * their code from the C++ exception's type, and callNative keeps a known code and never reads the message.
 */
import t from 'tap'
import { readFileSync, readdirSync } from 'node:fs'
import { createServer } from 'node:net'
import { join } from 'node:path'
import { ERROR_CODES, LlamaproError, isErrorCode, isLlamaproCode } from '../lib/errors.js'
import { callNative, callNativeSync } from '../lib/native/call.js'
import { native } from '../lib/native/load.js'
import { REPO_ROOT } from './helpers/python.js'

const NATIVE = join(REPO_ROOT, 'native')

t.test('every LLAMAPRO_* string in native/ is an environment variable it reads or a listed error code', async (t) => {
  const sources = readdirSync(NATIVE)
    .filter((f) => /\.(cc|h)$/.test(f))
    .map((f) => readFileSync(join(NATIVE, f), 'utf8'))
    .join('\n')
  const literals = new Set([...sources.matchAll(/"(LLAMAPRO_[A-Z0-9_]+)"/g)].map((m) => m[1]!))
  const variables = new Set([...sources.matchAll(/getenv\("(LLAMAPRO_[A-Z0-9_]+)"\)/g)].map((m) => m[1]!))
  const codes = [...literals].filter((name) => !variables.has(name)).sort()
  t.same(
    codes.filter((code) => !isErrorCode(code)),
    [],
    `native codes ${codes.join(', ')} are all in lib/error-codes.ts`,
  )
  const found = ['LLAMAPRO_OUT_OF_MEMORY', 'LLAMAPRO_DISTRIBUTED', 'LLAMAPRO_NO_CUDA'].every((c) => codes.includes(c))
  t.ok(found, 'the scan finds them')
  const classifiesText = /ErrorCodeFor|find\("out of memory"\)|rfind\("distributed: "/
  t.notOk(classifiesText.test(sources), 'no code is chosen from the text of a message')
})

t.test('callNative keeps a listed code and gives LLAMAPRO_NATIVE to anything else, whatever the message', async (t) => {
  const rejecting = (message: string, code?: string) => async () => {
    throw Object.assign(new Error(message), code === undefined ? {} : { code })
  }
  await t.rejects(callNative('step', rejecting('this cache is busy', 'LLAMAPRO_BUSY')), {
    code: 'LLAMAPRO_BUSY',
    message: 'step: this cache is busy',
  })
  await t.rejects(callNative('step', rejecting('out of memory: CUDA', 'ERR_SOMETHING')), { code: 'LLAMAPRO_NATIVE' })
  await t.rejects(callNative('step', rejecting('distributed: rank 0 of 2: out of memory')), { code: 'LLAMAPRO_NATIVE' })
  t.throws(
    () =>
      callNativeSync('load', () => {
        throw 'a string'
      }),
    { code: 'LLAMAPRO_NATIVE', message: 'load: a string' },
  )
  const error = await callNative('forward', rejecting('x', 'LLAMAPRO_DISPOSED')).catch((e: unknown) => e)
  t.ok(error instanceof LlamaproError && isLlamaproCode(error))
  t.match((error as Error).stack, /error-codes\.test\.ts/, "the stack is the caller's")
  const unlisted = Object.assign(new Error('x'), { code: 'LLAMAPRO_SOMETHING_ELSE' })
  t.notOk(isLlamaproCode(unlisted), 'an unlisted code is not one of ours')
  t.ok(
    Object.values(ERROR_CODES).every((meaning) => meaning.length > 10),
    'each code says what it means',
  )
  const api = await import('../lib/index.js')
  t.equal(api.ERROR_CODES, ERROR_CODES, 'the package exports the list')
  t.ok(api.isErrorCode('LLAMAPRO_MERGE') && !api.isErrorCode('EISDIR'))
})

t.test('a native failure carries the code of its C++ type: a failed rendezvous is LLAMAPRO_DISTRIBUTED', async (t) => {
  const binding = native()
  t.ok(binding.distributedBackends().includes('gloo'), 'the build has the gloo backend (distributed.test.ts needs it)')
  // A port nobody listens on: rank 1 waits for rank 0's store, which never comes.
  const port = await new Promise<number>((resolve) => {
    const server = createServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number }
      server.close(() => resolve(port))
    })
  })
  const group = new binding.NativeProcessGroup()
  const options = {
    rank: 1,
    worldSize: 2,
    localRank: 1,
    masterAddr: '127.0.0.1',
    masterPort: port,
    timeoutMs: 300,
    backend: 'gloo' as const,
    bucketBytes: 1 << 20,
  }
  await t.rejects(group.connect(options), {
    code: 'LLAMAPRO_DISTRIBUTED',
    message: new RegExp(`^distributed: rank 1 of 2: the rendezvous at 127\\.0\\.0\\.1:${port} failed`),
  })
})
