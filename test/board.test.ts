/**
 * The board's server (lib/board): what /api answers about run folders — a real training run's and ones written as
 * the run-folder contract describes — live updates over the event stream, and what it refuses to serve.
 */
import t from 'tap'
import { spawn, spawnSync } from 'node:child_process'
import { appendFileSync, mkdirSync, readFileSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs'
import { request } from 'node:http'
import { join } from 'node:path'
import { startBoard } from '../lib/index.js'
import { runBoard } from '../lib/cli/board.js'
import { downsampleColumns, MAX_DRAWN_POINTS } from '../lib/board/series.js'
import { downsample } from '../lib/util/downsample.js'
import type { RunDetail, RunList } from '../lib/board/wire.js'
import { parseTrainConfig } from '../lib/train/config.js'
import { train } from '../lib/train/trainer.js'
import { syntheticEval, syntheticLog, syntheticRecord, writeSyntheticRun } from './helpers/run-folder.js'
import { writeDatasets, writeTrainableModel } from './helpers/trainable-model.js'
import { REPO_ROOT } from './helpers/python.js'

const CLI = join(REPO_ROOT, 'dist', 'cli', 'main.js')

/** The log's lines parsed independently of the board: every complete line that is JSON. */
const logLines = (dir: string) =>
  readFileSync(join(dir, 'trainer_log.jsonl'), 'utf8')
    .split('\n')
    .filter((l) => l.trim())
    .map((l) => JSON.parse(l) as Record<string, unknown>)

/** A GET (or other method) with the path sent exactly as written: fetch() would normalise `..` away first. */
type RawResponse = { status: number; body: string; headers: Record<string, unknown> }
function raw(port: number, path: string, options: { method?: string; host?: string } = {}): Promise<RawResponse> {
  const headers = options.host ? { host: options.host } : {}
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, method: options.method ?? 'GET', headers }, (res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (c: string) => (body += c))
      res.on('end', () => resolve({ status: res.statusCode!, body, headers: res.headers }))
    })
    req.on('error', reject)
    req.end()
  })
}

const json = async <T>(url: string): Promise<T> => {
  const response = await fetch(url)
  if (!response.ok) throw new Error(`${url}: ${response.status}`)
  return (await response.json()) as T
}

/** Reads an event stream and hands out its events, in order, as they arrive. */
function eventStream(url: string) {
  const events: { event: string; data: any }[] = []
  const waiters: { test: (e: { event: string; data: any }) => boolean; resolve: (e: any) => void }[] = []
  const controller = new AbortController()
  void (async () => {
    const response = await fetch(url, { signal: controller.signal })
    const decoder = new TextDecoder()
    let buffer = ''
    for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) {
      buffer += decoder.decode(chunk, { stream: true })
      let end
      while ((end = buffer.indexOf('\n\n')) >= 0) {
        const block = buffer.slice(0, end)
        buffer = buffer.slice(end + 2)
        const event = /^event: (.*)$/m.exec(block)?.[1]
        const data = /^data: (.*)$/m.exec(block)?.[1]
        if (!event || data === undefined) continue
        const e = { event, data: JSON.parse(data) }
        events.push(e)
        for (const w of [...waiters]) if (w.test(e)) waiters.splice(waiters.indexOf(w), 1), w.resolve(e)
      }
    }
  })().catch(() => undefined)
  return {
    next: (test: (e: { event: string; data: any }) => boolean, what: string) =>
      new Promise<any>((resolve, reject) => {
        const found = events.find(test)
        if (found) return resolve(found)
        const timer = setTimeout(() => reject(new Error(`no ${what} within 20 s`)), 20_000)
        waiters.push({ test, resolve: (e) => (clearTimeout(timer), resolve(e)) })
      }),
    close: () => controller.abort(),
  }
}

t.test(
  'a real training run: the board reports its last logged values exactly and draws every logged point',
  async (t) => {
    const dir = t.testdir()
    await writeTrainableModel(join(dir, 'base'), { seed: 4 })
    const data = await writeDatasets(dir)
    const out = join(dir, 'out')
    const config = parseTrainConfig(
      {
        model_name_or_path: join(dir, 'base'),
        stage: 'pt',
        dataset: data.pt,
        finetuning_type: 'freeze',
        freeze_trainable_layers: 2,
        cutoff_len: 48,
        per_device_train_batch_size: 4,
        learning_rate: 3e-3,
        max_steps: 8,
        logging_steps: 1,
        save_steps: 1000,
        val_size: 4,
        eval_steps: 4,
        output_dir: out,
      },
      'board test',
      dir,
    )
    await train(config)
    const board = await startBoard({ dirs: [out], port: 0 })
    t.teardown(() => board.close())
    const list = await json<RunList>(`${board.url}api/runs`)
    t.equal(list.runs.length, 1)
    const [summary] = list.runs
    t.equal(summary!.id, '.', 'the folder given is itself the run')
    t.equal(summary!.status, 'finished', summary!.statusReason)
    const lines = logLines(out)
    const training = lines.filter((l) => typeof l.loss === 'number')
    const evals = lines.filter((l) => typeof l.eval_loss === 'number')
    const detail = await json<RunDetail>(`${board.url}api/run?id=.`)
    t.same(detail.lastRecord, lines.at(-1), "the last record is the log's last line, unchanged")
    t.equal(detail.last.loss, training.at(-1)!.loss)
    t.equal(detail.last.step, training.at(-1)!.current_steps)
    t.equal(detail.last.lr, training.at(-1)!.lr)
    t.equal(detail.last.eval.eval_loss, evals.at(-1)!.eval_loss)
    t.same(
      detail.series.loss,
      training.map((l) => [l.current_steps, l.loss]),
      'a short run is drawn point for point',
    )
    t.same(
      detail.series['eval/eval_loss'],
      evals.map((l) => [l.current_steps, l.eval_loss]),
    )
    const layers = Object.keys(training[0]!.layer_grad_norms as object)
    t.ok(layers.length >= 2, `layer grad norms of ${layers.join(', ')}`)
    for (const layer of layers) {
      t.equal(detail.series[`layer/${layer}`]?.length, training.length, `layer ${layer}: one point per logged step`)
    }
    t.equal(detail.progress.total_steps, 8)
    t.equal(detail.results.all?.train_loss !== undefined, true, 'all_results.json is shown')
  },
)

t.test("100,000 logged steps: the drawn series are bounded, the numbers shown are the last line's", async (t) => {
  const dir = t.testdir()
  const run = join(dir, 'long')
  writeSyntheticRun(run, {
    steps: 100_000,
    evalEvery: 1000,
    layers: [0, 1, 2, 3],
    expanded: [1, 3],
    evalDatasets: ['code', 'keep'],
  })
  // A spike that striding would likely miss: min/max buckets keep it.
  const spike = { ...syntheticRecord(100_001, 100_001), loss: 99.5 }
  appendFileSync(
    join(run, 'trainer_log.jsonl'),
    `${JSON.stringify(spike)}\n${JSON.stringify(syntheticRecord(100_002, 100_002))}\n`,
  )
  const board = await startBoard({ dirs: [dir] })
  t.teardown(() => board.close())
  const detail = await json<RunDetail>(`${board.url}api/run?id=long`)
  const lines = logLines(run)
  t.equal(detail.lines, lines.length)
  for (const [name, points] of Object.entries(detail.series)) {
    t.ok(points.length <= MAX_DRAWN_POINTS, `${name}: ${points.length} points drawn of ${detail.pointCounts[name]}`)
  }
  t.equal(detail.pointCounts.loss, 100_002)
  t.equal(Math.max(...detail.series.loss!.map((p) => p[1])), 99.5, 'the spike is drawn')
  t.same(detail.lastRecord, lines.at(-1))
  t.equal(detail.last.loss, lines.at(-1)!.loss, "the loss shown is the last line's, not a downsampled one")
  t.equal(detail.last.step, 100_002)
  t.equal(detail.last.eval.eval_keep_loss, lines.filter((l) => 'eval_keep_loss' in l).at(-1)!.eval_keep_loss)
  t.same(detail.meta?.expanded_layer_ids, [1, 3])
  t.match(detail.config, /use_llama_pro: true/)
  t.ok(detail.logTail!.length <= 20_000 && detail.logTail!.endsWith("'step': 100000}\n"), 'the end of running_log.txt')
  const small = await json<RunDetail>(`${board.url}api/run?id=long&points=100`)
  t.ok(small.series.loss!.length <= 100, 'points= asks for fewer')
})

t.test(
  "the server's column downsampling keeps what lib/util/downsample keeps: ends, each bucket's extremes",
  async (t) => {
    const xs = Array.from({ length: 10_000 }, (_, i) => i)
    const ys = xs.map((x) => Math.sin(x / 100) + (x === 4321 ? 50 : 0) - (x === 777 ? 50 : 0))
    const drawn = downsampleColumns(xs, ys, 200)
    t.same(
      drawn,
      downsample(
        xs.map((x, i) => [x, ys[i]!]),
        200,
      ),
      "the same points as the chart module's downsample",
    )
    let seed = 7
    const noise = xs.map(() => (seed = (seed * 16807) % 2147483647) / 2147483647)
    for (const max of [2, 3, 101, 2000, 9999]) {
      t.same(
        downsampleColumns(xs, noise, max),
        downsample(
          xs.map((x, i) => [x, noise[i]!]),
          max,
        ),
        `random data, ${max} points`,
      )
    }
    t.ok(drawn.length <= 200)
    t.same(drawn[0], [0, ys[0]])
    t.same(drawn.at(-1), [9999, ys[9999]])
    t.ok(drawn.some((p) => p[0] === 4321) && drawn.some((p) => p[0] === 777), 'both spikes')
    t.ok(
      drawn.every((p, i) => i === 0 || p[0] > drawn[i - 1]![0]),
      'in x order',
    )
    t.same(
      downsampleColumns([1, 2], [3, 4]),
      [
        [1, 3],
        [2, 4],
      ],
      'short series untouched',
    )
  },
)

t.test('a half-written last line is left for later; a broken complete line is skipped', async (t) => {
  const dir = t.testdir()
  writeSyntheticRun(dir, { steps: 10 })
  const log = join(dir, 'trainer_log.jsonl')
  const board = await startBoard({ dirs: [dir] })
  t.teardown(() => board.close())
  const next = JSON.stringify(syntheticRecord(11, 11))
  appendFileSync(log, next.slice(0, 40))
  let detail = await json<RunDetail>(`${board.url}api/run?id=.`)
  t.equal(detail.lines, 10, 'the half line is not counted')
  t.equal(detail.skippedLines, 0, 'nor is it an error')
  t.equal(detail.last.step, 10)
  appendFileSync(log, `${next.slice(40)}\n`)
  detail = await json<RunDetail>(`${board.url}api/run?id=.`)
  t.equal(detail.lines, 11, 'read once it completes')
  t.same(detail.lastRecord, JSON.parse(next))
  appendFileSync(log, '{"current_steps": 12, "loss": \n')
  appendFileSync(log, `${JSON.stringify(syntheticRecord(13, 13))}\n`)
  detail = await json<RunDetail>(`${board.url}api/run?id=.`)
  t.equal(detail.skippedLines, 1, 'a complete line that is not JSON is skipped')
  t.equal(detail.last.step, 13, 'and the lines after it are read')
})

t.test('status: running, finished, interrupted, stopped (a dead process, a quiet log)', async (t) => {
  const dir = t.testdir()
  const dead = spawnSync(process.execPath, ['-e', '0']).pid!
  writeSyntheticRun(join(dir, 'alive'), { steps: 5, totalSteps: 10 })
  writeSyntheticRun(join(dir, 'done'), { steps: 10, pid: dead })
  writeFileSync(join(dir, 'done', 'all_results.json'), JSON.stringify({ train_loss: 1.5 }))
  writeSyntheticRun(join(dir, 'stopped'), { steps: 5, totalSteps: 10, pid: dead })
  writeFileSync(join(dir, 'stopped', 'interrupted_results.json'), JSON.stringify({ train_loss: 1.6 }))
  writeSyntheticRun(join(dir, 'crashed'), { steps: 5, totalSteps: 10, pid: dead })
  writeSyntheticRun(join(dir, 'old'), { steps: 5, totalSteps: 10, newFiles: false })
  const hourAgo = Date.now() / 1000 - 3600
  utimesSync(join(dir, 'old', 'trainer_log.jsonl'), hourAgo, hourAgo)
  writeSyntheticRun(join(dir, 'other-host'), { steps: 5, totalSteps: 10, newFiles: false })
  const board = await startBoard({ dirs: [dir] })
  t.teardown(() => board.close())
  const { runs } = await json<RunList>(`${board.url}api/runs`)
  const status = Object.fromEntries(runs.map((r) => [r.id, r.status]))
  const expected = {
    alive: 'running',
    crashed: 'stopped',
    done: 'finished',
    old: 'stopped',
    'other-host': 'running',
    stopped: 'interrupted',
  }
  t.same(status, expected)
  t.match(runs.find((r) => r.id === 'crashed')!.statusReason, new RegExp(`process ${dead} on this host has ended`))
  t.match(runs.find((r) => r.id === 'old')!.statusReason, /has not changed for 60 min/)
})

t.test('it serves nothing outside the folders given: each of these is a 404', async (t) => {
  const dir = t.testdir({ 'secret.txt': 'secret', runs: {} })
  const runs = join(dir, 'runs')
  writeSyntheticRun(join(runs, 'a'), { steps: 3 })
  symlinkSync(join(dir, 'secret.txt'), join(runs, 'a', 'leak.txt'))
  symlinkSync(dir, join(runs, 'a', 'up'))
  symlinkSync(dir, join(runs, 'outside'))
  mkdirSync(join(dir, 'elsewhere'))
  writeSyntheticRun(join(dir, 'elsewhere', 'run'), { steps: 2 })
  symlinkSync(join(dir, 'elsewhere'), join(runs, 'linked-out'))
  // A run folder whose log is a link out of it is not read.
  mkdirSync(join(runs, 'b'))
  symlinkSync(join(dir, 'elsewhere', 'run', 'trainer_log.jsonl'), join(runs, 'b', 'trainer_log.jsonl'))
  const board = await startBoard({ dirs: [runs] })
  t.teardown(() => board.close())
  const ok = await raw(board.port, '/files/0/a/training_args.yaml')
  t.equal(ok.status, 200, 'a file of a run is served')
  t.match(ok.body, /max_steps: 3/)
  t.equal((await raw(board.port, '/assets/util/chart.js')).status, 200, 'the chart module is served')
  for (const path of [
    '/files/0/../secret.txt',
    '/files/0/a/../../secret.txt',
    '/files/0/%2e%2e/secret.txt',
    '/files/0/%2E%2E/secret.txt',
    '/files/0/a/%2e%2e/%2e%2e/secret.txt',
    '/files/0/%252e%252e/secret.txt',
    '/files/0/..%2fsecret.txt',
    '/files/0/..%5csecret.txt',
    '/files/0/%2Ftmp%2Fsecret.txt',
    `/files/0/${encodeURIComponent(join(dir, 'secret.txt'))}`,
    `/files/0${join(dir, 'secret.txt')}`,
    '/files/1/a/training_args.yaml',
    '/files/-1/a/training_args.yaml',
    '/files/0/a/training_args.yaml%00.txt',
    '/files/0/a/leak.txt',
    '/files/0/a/up/secret.txt',
    '/files/0/outside/secret.txt',
    '/files/0/linked-out/run/training_args.yaml',
    '/files/0/a/llamapro_run.json/x.txt',
    '/assets/../package.json',
    '/assets/%2e%2e/%2e%2e/package.json',
    '/assets/util/../../package.json',
    '/assets/index.js',
    '/package.json',
    '//etc/passwd',
    '/etc/passwd',
    '/api/run?id=..%2Fsecret.txt',
  ]) {
    const response = await raw(board.port, path)
    t.equal(response.status, 404, `${path} → 404`)
    t.notMatch(response.body, /secret|max_steps: 2/, `${path} leaks nothing`)
  }
  const { runs: found } = await json<RunList>(`${board.url}api/runs`)
  t.same(
    found.map((r) => r.id),
    ['a', 'b'],
    'folders linked from outside are not runs',
  )
  const b = await json<RunDetail>(`${board.url}api/run?id=b`)
  t.equal(b.lines, 0, 'a log that links out of its run folder is not read')
  const post = await raw(board.port, '/api/runs', { method: 'POST' })
  t.equal(post.status, 405, 'read-only')
  t.equal(post.headers.allow, 'GET, HEAD')
  t.equal((await raw(board.port, '/api/runs', { method: 'DELETE' })).status, 405)
  const head = await raw(board.port, '/api/runs', { method: 'HEAD' })
  t.equal(head.status, 200)
  t.equal(head.body, '')
  const rebound = await raw(board.port, '/api/runs', { host: 'evil.example:80' })
  t.equal(rebound.status, 403, 'a page on another name that resolves here gets nothing')
  const page = await raw(board.port, '/')
  t.match(page.headers['content-security-policy'], /default-src 'none'/)
  t.notMatch(page.body, /https?:\/\//, 'the page loads nothing from elsewhere')
})

t.test('the event stream delivers lines appended after connect, and runs that appear later', async (t) => {
  const dir = t.testdir()
  writeSyntheticRun(join(dir, 'runs', 'a'), { steps: 3, totalSteps: 10 })
  const board = await startBoard({ dirs: [dir] })
  t.teardown(() => board.close())
  const stream = eventStream(`${board.url}api/events`)
  t.teardown(() => stream.close())
  const first = await stream.next((e) => e.event === 'runs', 'the list of runs')
  t.same(
    first.data.runs.map((r: { id: string }) => r.id),
    ['runs/a'],
  )
  const line = syntheticRecord(4, 10)
  appendFileSync(join(dir, 'runs', 'a', 'trainer_log.jsonl'), `${JSON.stringify(line)}\n`)
  const records = await stream.next((e) => e.event === 'records', 'the appended line')
  t.same(records.data, { id: 'runs/a', from: 3, reset: false, records: [line] })
  const updated = await stream.next((e) => e.event === 'runs' && e.data.runs[0].last.step === 4, 'the new summary')
  t.equal(updated.data.runs[0].last.loss, line.loss)
  writeSyntheticRun(join(dir, 'runs', 'b'), { steps: 2 })
  const grown = await stream.next((e) => e.event === 'runs' && e.data.runs.length === 2, 'the new run')
  t.same(
    grown.data.runs.map((r: { id: string }) => r.id),
    ['runs/a', 'runs/b'],
  )
  // The file replaced (overwrite_output_dir): the stream says to start over.
  writeFileSync(join(dir, 'runs', 'a', 'trainer_log.jsonl.new'), `${JSON.stringify(syntheticEval(1, 10, []))}\n`)
  const { renameSync } = await import('node:fs')
  renameSync(join(dir, 'runs', 'a', 'trainer_log.jsonl.new'), join(dir, 'runs', 'a', 'trainer_log.jsonl'))
  const reset = await stream.next((e) => e.event === 'records' && e.data.reset, 'the reset')
  t.equal(reset.data.records.length, 1)
})

t.test('errors: a port in use, a missing folder, a folder with no run', async (t) => {
  const dir = t.testdir({ empty: {} })
  const first = await startBoard({ dirs: [dir] })
  t.teardown(() => first.close())
  const inUse = `port ${first.port} is in use; choose another with --port`
  await t.rejects(startBoard({ dirs: [dir], port: first.port }), { code: 'LLAMAPRO_BOARD_PORT', message: inUse })
  const missing = new RegExp(`${join(dir, 'nope')}: no such folder`)
  await t.rejects(startBoard({ dirs: [join(dir, 'nope')] }), { code: 'LLAMAPRO_BOARD_FOLDER', message: missing })
  await t.rejects(startBoard({ dirs: [] }), { code: 'LLAMAPRO_BOARD_FOLDER' })
  const empty = await startBoard({ dirs: [join(dir, 'empty')] })
  t.teardown(() => empty.close())
  t.same((await json<RunList>(`${empty.url}api/runs`)).runs, [], 'the page gets no runs (and shows its empty state)')
  const noRun = new RegExp(`no training run in ${join(dir, 'empty')}: a run folder holds trainer_log.jsonl`)
  await t.rejects(runBoard([join(dir, 'empty'), '--port', '0']), { code: 'LLAMAPRO_USAGE', message: noRun })
  await t.rejects(runBoard([join(dir, 'nope')]), { message: /no such folder/ })
  await t.rejects(runBoard(['--port', '70000', dir]), { message: /--port must be at most 65535/ })
  const aborted = new AbortController()
  const closing = await startBoard({ dirs: [dir], signal: aborted.signal })
  aborted.abort()
  await t.rejects(fetch(`${closing.url}api/runs`), 'an aborted signal closes the board')
})

t.test('the CLI prints the URL, serves, and Ctrl-C closes it', async (t) => {
  const dir = t.testdir()
  writeFileSync(join(dir, 'trainer_log.jsonl'), syntheticLog({ steps: 4 }))
  const child = spawn(process.execPath, [CLI, 'board', dir, '--port', '0'], { stdio: ['ignore', 'pipe', 'pipe'] })
  t.teardown(() => child.kill())
  const url = await new Promise<string>((resolve, reject) => {
    let out = ''
    child.stdout.on('data', (c: Buffer) => {
      out += c
      const m = /(http:\/\/127\.0\.0\.1:\d+\/)/.exec(out)
      if (m) resolve(m[1]!)
    })
    child.on('exit', (code) => reject(new Error(`exited ${code} before printing a URL: ${out}`)))
  })
  const list = await json<RunList>(`${url}api/runs`)
  t.equal(list.runs[0]!.last.step, 4)
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)))
  child.kill('SIGINT')
  t.equal(await exited, 0, 'Ctrl-C closes the board')
  const help = spawnSync(process.execPath, [CLI, 'board', '--help'], { encoding: 'utf8' })
  t.match(help.stdout, /^llamapro board \[dir \.\.\.\] \[--port N\] \[--host H\]/)
  const listed = spawnSync(process.execPath, [CLI, '--help'], { encoding: 'utf8' })
  t.match(listed.stdout, /\n {2}board +a live web page over training runs/)
})
