/**
 * The Electron example's worker (examples/electron/llamapro-worker.mjs) under plain Node: forked with an IPC
 * channel shaped like Electron's process.parentPort (test/helpers/parent-port.mjs). Electron itself is not run here.
 */
import t from 'tap'
import { fork } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { writeDatasets, writeTrainableModel } from './helpers/trainable-model.js'
import { REPO_ROOT } from './helpers/python.js'

const WORKER = join(REPO_ROOT, 'examples', 'electron', 'llamapro-worker.mjs')
const SHIM = join(REPO_ROOT, 'test', 'helpers', 'parent-port.mjs')

t.test(
  'the worker trains while the parent stays responsive, reports progress, stops with a checkpoint, streams generation',
  async (t) => {
    const dir = t.testdir()
    await writeTrainableModel(join(dir, 'base'), { seed: 5 })
    const data = await writeDatasets(dir)
    const worker = fork(SHIM, [WORKER], {
      env: { ...process.env, LLAMAPRO_MODULE: join(REPO_ROOT, 'dist', 'index.js') },
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    })
    t.teardown(() => worker.kill())
    const messages: any[] = []
    const waiters: { test: (m: any) => boolean; resolve: (m: any) => void }[] = []
    worker.on('message', (m: any) => {
      messages.push(m)
      for (const w of [...waiters]) if (w.test(m)) waiters.splice(waiters.indexOf(w), 1), w.resolve(m)
    })
    const next = (test: (m: any) => boolean, what: string) =>
      new Promise<any>((resolve, reject) => {
        const found = messages.find(test)
        if (found) return resolve(found)
        const timer = setTimeout(
          () => reject(new Error(`no ${what} within 120 s; got ${JSON.stringify(messages.slice(-3))}`)),
          120_000,
        )
        waiters.push({ test, resolve: (m) => (clearTimeout(timer), resolve(m)) })
      })

    const ready = await next((m) => m.type === 'ready' || m.type === 'error', 'ready message')
    t.equal(ready.type, 'ready', JSON.stringify(ready))
    t.match(ready.libtorch, /^\d+\.\d+/)

    // The parent's event loop: a 10 ms timer, its ticks and the longest gap between two of them.
    let ticks = 0
    let last = performance.now()
    let longestGap = 0
    const timer = setInterval(() => {
      const now = performance.now()
      longestGap = Math.max(longestGap, now - last)
      last = now
      ticks++
    }, 10)
    t.teardown(() => clearInterval(timer))

    const started = performance.now()
    worker.send({
      type: 'train',
      baseDir: dir,
      config: {
        model_name_or_path: join(dir, 'base'),
        stage: 'pt',
        dataset: data.pt,
        finetuning_type: 'freeze',
        freeze_trainable_layers: 2,
        cutoff_len: 48,
        per_device_train_batch_size: 4,
        learning_rate: 3e-3,
        max_steps: 500,
        logging_steps: 1,
        save_steps: 10_000,
        output_dir: join(dir, 'out'),
      },
    })
    // Stop after the third step and at least 1.5 s of training (a fast LibTorch takes ~0.1 s a step), so that the
    // timer below measures a run long enough to show a blocked parent.
    await next(
      (m) =>
        m.type === 'train-event' && m.event.type === 'step' && m.event.step >= 3 && performance.now() - started >= 1500,
      'third step after 1.5 s',
    )
    // What main.js does on the start event: the board over the folder the worker named, from 'llamapro/board'.
    const output = await next((m) => m.type === 'train-output', 'the output folder')
    t.equal(output.outputDir, join(dir, 'out'))
    const exported = JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')).exports['./board'].import
    const { startBoard } = (await import(join(REPO_ROOT, exported))) as typeof import('../lib/board/server.js')
    const board = await startBoard({ dirs: [output.outputDir], port: 0 })
    t.teardown(() => board.close())
    type Shown = { runs: { status: string; last: { step: number } }[] }
    const shown = (await (await fetch(`${board.url}api/runs`)).json()) as Shown
    t.equal(shown.runs[0]?.status, 'running', 'the board shows the run the worker trains')
    t.ok(shown.runs[0]!.last.step >= 1, `at step ${shown.runs[0]!.last.step}`)
    worker.send({ type: 'stop' })
    const done = await next(
      (m) => m.type === 'train-done' || (m.type === 'error' && m.during === 'train'),
      'end of the run',
    )
    const elapsed = performance.now() - started
    clearInterval(timer)

    t.equal(done.type, 'train-done', JSON.stringify(done))
    t.equal(done.result.aborted, true, 'Stop ended the run early')
    t.ok(done.result.globalStep >= 3 && done.result.globalStep < 500, `stopped at step ${done.result.globalStep}`)
    t.equal(done.result.checkpoints.length, 1, 'a checkpoint was written on Stop')
    const checkpoint = done.result.checkpoints[0]
    t.ok(
      existsSync(join(checkpoint, 'model.safetensors')) || existsSync(join(checkpoint, 'model.safetensors.index.json')),
      `${checkpoint} holds the model`,
    )
    t.equal(
      JSON.parse(readFileSync(join(checkpoint, 'trainer_state.json'), 'utf8')).global_step,
      done.result.globalStep,
    )

    const events = messages.filter((m) => m.type === 'train-event').map((m) => m.event)
    const steps = events.filter((e) => e.type === 'step')
    t.equal(
      events.find((e) => e.type !== 'data')?.type,
      'start',
      'the first progress message after data preparation is the start event',
    )
    t.same(
      steps.map((e) => e.step),
      Array.from({ length: steps.length }, (_, i) => i + 1),
      'one loss point per step, in order',
    )
    t.ok(
      steps.every((e) => Number.isFinite(e.loss) && e.loss > 0),
      'loss points are numbers',
    )
    t.ok(
      events.some((e) => e.type === 'checkpoint' && e.path === checkpoint),
      'the checkpoint was announced',
    )
    // Training took seconds; a blocked parent would show one gap that long and few ticks.
    t.ok(elapsed >= 1500, `the run took ${elapsed.toFixed(0)} ms`)
    t.ok(
      longestGap < 1000,
      `the parent's longest timer gap was ${longestGap.toFixed(0)} ms during ${elapsed.toFixed(0)} ms of training`,
    )
    t.ok(ticks >= elapsed / 10 / 4, `${ticks} ticks of a 10 ms timer in ${elapsed.toFixed(0)} ms`)

    // From the base model, whose greedy reply does not depend on where the run above was stopped.
    worker.send({ type: 'generate', model: join(dir, 'base'), prompt: 'def add', maxNewTokens: 6 })
    const generated = await next(
      (m) => m.type === 'generate-done' || (m.type === 'error' && m.during === 'generate'),
      'generation',
    )
    t.equal(generated.type, 'generate-done', JSON.stringify(generated))
    const tokens = messages.filter((m) => m.type === 'token').map((m) => m.text)
    t.ok(tokens.length >= 1, `${tokens.length} token messages streamed`)
    t.equal(tokens.join(''), generated.text, 'the streamed pieces make up the reply')

    worker.send({ type: 'dance' })
    const refused = await next((m) => m.type === 'error' && m.during === 'message', 'refusal of an unknown message')
    t.match(refused.message, /unknown message "dance" \(valid: train, stop, generate\)/)
  },
)
