// The published declarations (tsconfig.build.json, stripInternal) show users LlamaModel's methods, never the raw
// addon handle or the internal training facade: an app that reached for `model.native` would couple itself to the
// addon's calling conventions, which change without notice (and can crash the process when misused).
import t from 'tap'
import { spawnSync } from 'node:child_process'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { REPO_ROOT } from './helpers/python.js'

const TSC = join(REPO_ROOT, 'node_modules', '.bin', 'tsc')

t.test('the public .d.ts has no raw native handle; a consumer that uses one does not type-check', async (t) => {
  const dir = t.testdir()
  const out = join(dir, 'types')
  const emit = spawnSync(
    TSC,
    [
      '-p',
      join(REPO_ROOT, 'tsconfig.build.json'),
      '--emitDeclarationOnly',
      '--declarationMap',
      'false',
      '--outDir',
      out,
    ],
    { cwd: REPO_ROOT, encoding: 'utf8' },
  )
  t.equal(emit.status, 0, `declarations emitted\n${emit.stdout}${emit.stderr}`)
  const model = readFileSync(join(out, 'model', 'llama-model.d.ts'), 'utf8')
  for (const hidden of [
    'get native()',
    'NativeModelHandle',
    'get optimizer()',
    'get gradientSync()',
    'trainStep(',
    'writeTensors(',
  ]) {
    t.notOk(model.includes(hidden), `llama-model.d.ts does not declare ${hidden}`)
  }
  t.ok(model.includes('static load(dir: string'), 'LlamaModel.load is declared')
  t.notOk(
    readFileSync(join(out, 'distributed', 'process-group.d.ts'), 'utf8').includes('handle'),
    'ProcessGroup does not declare its handle',
  )

  const consumer = (body: string) => {
    writeFileSync(
      join(dir, 'consumer.ts'),
      `import type { LlamaModel } from './types/index.js'\nexport function f(model: LlamaModel) {\n${body}\n}\n`,
    )
    writeFileSync(
      join(dir, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: {
          module: 'NodeNext',
          moduleResolution: 'NodeNext',
          target: 'ES2022',
          strict: true,
          noEmit: true,
          skipLibCheck: true,
          types: [],
        },
        files: ['consumer.ts'],
      }),
    )
    return spawnSync(TSC, ['-p', 'tsconfig.json'], { cwd: dir, encoding: 'utf8' })
  }
  const ok = consumer('  return model.parameters().length + model.config.numLayers + model.memory().parameterBytes')
  t.equal(ok.status, 0, `the public API type-checks\n${ok.stdout}`)
  const raw = consumer('  return model.native.forward(new Int32Array(1), 1, 1)')
  t.not(raw.status, 0, 'model.native is not part of the public API')
  t.match(raw.stdout, /Property 'native' does not exist on type 'LlamaModel'/)
})
