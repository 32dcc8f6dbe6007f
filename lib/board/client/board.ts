/**
 * The board's page: the run list, one run's detail or several runs overlaid, kept live by the server's event
 * stream (/api/events). Curves arrive downsampled (/api/run) and grow from the appended records; the numbers shown
 * as text are the server's exact last values, never read off a downsampled curve.
 */
import { type Series, downsample } from '../../util/chart.js'
import { MAX_DRAWN_POINTS, recordPoints } from '../series.js'
import type { AppendedRecords, Point, RunDetail, RunList, RunSummary } from '../wire.js'
import { $, asSeries, card, chart, compact, el, evalLabel, evalName, exact, progressBar, statusPill } from './view.js'

interface ClientRun {
  summary: RunSummary
  detail: RunDetail | null
  /** Drawn curves by series name, grown by appended records and re-downsampled when long. */
  curves: Map<string, Point[]>
  /** Lines of the log the curves hold. */
  lines: number
  loading: Promise<void> | null
}

const COMPARE = '#compare'
const runs = new Map<string, ClientRun>()
let roots: string[] = []
let selected: string | null = new URLSearchParams(location.search).get('run')
// biome-ignore lint/correctness/noUnusedVariables: read by `??=` in scheduleRender (biome counts only the writes)
let renderTimer: ReturnType<typeof setTimeout> | undefined

function scheduleRender(): void {
  renderTimer ??= setTimeout(() => {
    renderTimer = undefined
    render()
  }, 200)
}

async function loadDetail(run: ClientRun, points = MAX_DRAWN_POINTS): Promise<void> {
  run.loading ??= (async () => {
    const response = await fetch(`/api/run?id=${encodeURIComponent(run.summary.id)}&points=${points}`)
    if (!response.ok) throw new Error(`/api/run answered ${response.status}`)
    const detail = (await response.json()) as RunDetail
    run.detail = detail
    run.summary = detail
    run.curves = new Map(Object.entries(detail.series))
    run.lines = detail.lines
  })().finally(() => {
    run.loading = null
    scheduleRender()
  })
  return run.loading
}

function append(event: AppendedRecords): void {
  const run = runs.get(event.id)
  if (!run?.detail) return
  if (event.reset || event.from > run.lines) return void loadDetail(run) // replaced, or lines we never saw
  const fresh = event.records.slice(run.lines - event.from)
  for (const record of fresh) {
    for (const [name, value] of recordPoints(record)) {
      let curve = run.curves.get(name)
      if (!curve) run.curves.set(name, (curve = []))
      curve.push([record.current_steps as number, value])
      if (curve.length > 2 * MAX_DRAWN_POINTS) {
        run.curves.set(name, downsample(curve, MAX_DRAWN_POINTS))
      }
    }
    run.detail.lastRecord = record
  }
  run.lines += fresh.length
  if (fresh.length) scheduleRender()
}

function updateList(list: RunList): void {
  roots = list.roots
  const seen = new Set<string>()
  for (const summary of list.runs) {
    seen.add(summary.id)
    const run = runs.get(summary.id)
    if (run) run.summary = summary
    else runs.set(summary.id, { summary, detail: null, curves: new Map(), lines: 0, loading: null })
  }
  for (const id of runs.keys()) if (!seen.has(id)) runs.delete(id)
  scheduleRender()
}

function select(id: string): void {
  selected = id
  const url = new URL(location.href)
  url.searchParams.set('run', id === COMPARE ? 'compare' : id)
  history.replaceState(null, '', url)
  render()
}

function current(): string | null {
  if (selected === 'compare') selected = COMPARE
  if (selected && (selected === COMPARE ? runs.size > 1 : runs.has(selected))) return selected
  return runs.size > 1 ? COMPARE : (runs.keys().next().value ?? null)
}

function fraction(s: RunSummary): number {
  if (s.status === 'finished') return 1
  if (s.progress.percentage !== null) return s.progress.percentage / 100
  const { current_steps: done, total_steps: total } = s.progress
  return done !== null && total ? done / total : 0
}

function renderList(view: string | null): void {
  $('roots').textContent = roots.join('  ·  ')
  const compare = $<HTMLButtonElement>('compare-link')
  compare.hidden = runs.size < 2
  compare.textContent = `Compare ${runs.size} runs`
  compare.classList.toggle('active', view === COMPARE)
  compare.onclick = () => select(COMPARE)
  const items = [...runs.values()].map(({ summary: s }) => {
    const { current_steps: done, total_steps: total, remaining_time: remaining } = s.progress
    const steps = done === null ? 'no steps yet' : `step ${done}${total ? ` / ${total}` : ''}`
    const eta = remaining && s.status === 'running' ? `ETA ${remaining}` : ''
    const item = el(
      'li',
      { class: `run${view === s.id ? ' active' : ''}`, 'data-run-id': s.id, 'data-status': s.status, title: s.path },
      el('div', { class: 'name' }, s.name),
      el('div', { class: 'meta' }, el('span', {}, steps), statusPill(s.status, s.statusReason)),
      el('div', { class: 'meta' }, el('span', {}, `loss ${exact(s.last.loss)}`), el('span', {}, eta)),
      progressBar(fraction(s)),
    )
    item.onclick = () => select(s.id)
    return item
  })
  $('run-list').replaceChildren(...items)
}

function renderEmpty(): void {
  const where = roots.length ? roots.map((r) => el('code', {}, r)) : []
  $('empty-state').replaceChildren(
    el('h1', {}, 'No training run here yet'),
    el('p', {}, 'Watching ', ...where.flatMap((c, i) => (i ? [', ', c] : [c])), '.'),
    el(
      'p',
      {},
      'A run folder is the output_dir of a training run: it holds ',
      el('code', {}, 'trainer_log.jsonl'),
      ' (written by llamapro train, by LLaMA-Factory, and by each run of llamapro sweep), and beside it ' +
        'running_log.txt, training_args.yaml and, at the end, all_results.json.',
    ),
    el('p', {}, 'This page shows a run as soon as one appears under these folders.'),
  )
}

const metaText = (meta: Record<string, unknown> | null): string => {
  if (!meta) return 'llamapro_run.json absent (an older run or another trainer): showing what the log holds'
  const list = (value: unknown) => (Array.isArray(value) && value.length ? value.join(', ') : 'none')
  return [
    `${String(meta.model_name_or_path ?? '?')}`,
    `stage ${String(meta.stage ?? '?')}`,
    `${String(meta.finetuning_type ?? '?')}`,
    `trainable layers ${list(meta.trainable_layer_ids)}`,
    `expanded blocks ${list(meta.expanded_layer_ids)}`,
    `device ${String(meta.device ?? '?')}`,
    meta.started_at ? `started ${String(meta.started_at)}` : '',
  ]
    .filter(Boolean)
    .join('  ·  ')
}

function layerOrder(a: string, b: string): number {
  const [x, y] = [Number(a), Number(b)]
  if (Number.isInteger(x) && Number.isInteger(y)) return x - y
  return Number.isInteger(x) ? -1 : Number.isInteger(y) ? 1 : a.localeCompare(b)
}

function runCharts(run: ClientRun): HTMLElement[] {
  const curves = run.curves
  const meta = run.detail?.meta ?? null
  const expanded = new Set((Array.isArray(meta?.expanded_layer_ids) ? meta.expanded_layer_ids : []).map(String))
  const evalKeys = [...curves.keys()].filter((k) => k.startsWith('eval/')).sort()
  const layers = [...curves.keys()]
    .filter((k) => k.startsWith('layer/'))
    .map((k) => k.slice(6))
    .sort(layerOrder)
  const layerSeries: Series[] = layers.map((k) => {
    const isLayer = Number.isInteger(Number(k))
    const label = isLayer ? `layer ${k}${expanded.has(k) ? ' (new)' : ''}` : k
    return asSeries(label, curves.get(`layer/${k}`), { dashed: expanded.size > 0 && !expanded.has(k) })
  })
  const original = layers.filter((k) => Number.isInteger(Number(k)) && !expanded.has(k))
  const layerCaption = expanded.size
    ? original.length
      ? `Solid: the expanded blocks (${[...expanded].join(', ')}); dashed: the original layers that train.`
      : `Every trainable layer is an expanded block (${[...expanded].join(', ')}): only the new blocks train.`
    : meta
      ? 'No expanded blocks in this run.'
      : 'llamapro_run.json absent: which blocks were expanded is not known.'
  return [
    chart({ id: 'chart-loss', title: 'Training loss', yLabel: 'loss', series: [asSeries('loss', curves.get('loss'))] }),
    chart({
      id: 'chart-eval',
      title: evalKeys.length > 1 ? 'Eval loss per dataset: learned vs kept' : 'Eval loss',
      yLabel: 'eval loss',
      series: evalKeys.map((k) => asSeries(evalName(k.slice(5)), curves.get(k), { markers: true })),
      caption: evalKeys.length > 1 ? 'One series per eval dataset (eval_on_each_dataset).' : undefined,
    }),
    chart({ id: 'chart-lr', title: 'Learning rate', yLabel: 'lr', series: [asSeries('lr', curves.get('lr'))] }),
    chart({
      id: 'chart-grad-norm',
      title: 'Gradient norm (all trainable)',
      yLabel: 'norm',
      series: [asSeries('grad norm', curves.get('grad_norm'))],
    }),
    chart({
      id: 'chart-layer-grad',
      title: 'Gradient norm per trainable layer',
      yLabel: 'norm (log scale)',
      logY: true,
      series: layerSeries,
      caption: layers.length ? layerCaption : undefined,
    }),
    chart({
      id: 'chart-throughput',
      title: 'Throughput',
      yLabel: 'tokens / s',
      series: [asSeries('tokens/s', curves.get('throughput'))],
    }),
  ]
}

function renderRun(run: ClientRun): void {
  const s = run.summary
  const d = run.detail
  const p = s.progress
  const evals = Object.entries(s.last.eval)
  const running = s.status === 'running'
  const of = p.total_steps ? ` of ${p.total_steps}` : ''
  const progressText = [
    p.current_steps === null ? 'no steps logged yet' : `step ${p.current_steps}${of}`,
    p.percentage !== null ? `${p.percentage}%` : '',
    p.elapsed_time ? `elapsed ${p.elapsed_time}` : '',
    p.remaining_time && s.status === 'running' ? `remaining ${p.remaining_time}` : '',
  ]
    .filter(Boolean)
    .join('  ·  ')
  const pane = (title: string, id: string, text: string) =>
    el('section', { class: 'pane' }, el('h2', {}, title), el('pre', { id }, text))
  const panes = [
    pane('Configuration (training_args.yaml)', 'config', d?.config ?? 'training_args.yaml absent (an older run)'),
    pane('running_log.txt (end)', 'log-tail', d?.logTail ?? 'running_log.txt absent (an older run)'),
  ]
  const results = d?.results.all ?? d?.results.interrupted
  const resultsFile = d?.results.all ? 'all_results.json' : 'interrupted_results.json'
  if (results) panes.push(pane(resultsFile, 'results', JSON.stringify(results, null, 2)))
  // The view is rebuilt on each update: keep where the reader had scrolled the text panes (the log follows its end).
  const scrolled = (id: string) => {
    const pre = document.getElementById(id)
    if (!pre) return { top: 0, atEnd: true }
    return { top: pre.scrollTop, atEnd: pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4 }
  }
  const [config, log] = [scrolled('config'), scrolled('log-tail')]
  $('run-view').replaceChildren(
    el(
      'div',
      { class: 'run-head' },
      el('h1', { id: 'run-title' }, s.name),
      el('span', { id: 'run-status' }, statusPill(s.status, s.statusReason)),
    ),
    el('div', { class: 'sub', id: 'run-path' }, `${s.path}  —  ${s.statusReason}`),
    el('div', { class: 'sub', id: 'run-meta' }, d ? metaText(d.meta) : 'loading…'),
    el(
      'div',
      { class: 'progress' },
      progressBar(fraction(s)),
      el('span', { class: 'text', id: 'progress-text' }, progressText),
    ),
    el(
      'div',
      { class: 'cards' },
      card('stat-step', 'Step', exact(s.last.step), s.last.step, p.total_steps ? `of ${p.total_steps}` : undefined),
      card('stat-loss', 'Loss', exact(s.last.loss), s.last.loss),
      card('stat-lr', 'Learning rate', compact(s.last.lr), s.last.lr),
      card('stat-grad-norm', 'Grad norm', exact(s.last.grad_norm), s.last.grad_norm),
      ...evals.map(([key, value]) => card(`stat-eval-${evalName(key)}`, evalLabel(key), exact(value), value)),
      card('stat-throughput', 'Throughput', compact(s.last.throughput), s.last.throughput, 'tokens / s'),
      running
        ? card('stat-time', 'Remaining', p.remaining_time ?? '–', undefined, `elapsed ${p.elapsed_time ?? '–'}`)
        : card('stat-time', 'Elapsed', p.elapsed_time ?? '–'),
    ),
    el('div', { class: 'charts' }, ...(d ? runCharts(run) : [])),
    el('div', { class: 'panes' }, ...panes),
  )
  $('config').scrollTop = config.top
  const logPane = $('log-tail')
  logPane.scrollTop = log.atEnd ? logPane.scrollHeight : log.top
}

function renderCompare(): void {
  const all = [...runs.values()]
  const evalKeys = [...new Set(all.flatMap((r) => [...r.curves.keys()].filter((k) => k.startsWith('eval/'))))].sort()
  const per = (name: string, markers = false) =>
    all.map((r) => asSeries(r.summary.name, r.curves.get(name), { markers }))
  const lastEvalKeys = [...new Set(all.flatMap((r) => Object.keys(r.summary.last.eval)))].sort()
  const columns = ['run', 'status', 'step', 'loss', ...lastEvalKeys.map(evalLabel), 'tokens / s']
  const header = el('tr', {}, ...columns.map((h) => el('th', {}, h)))
  const rows = all.map(({ summary: s }) => {
    const row = el(
      'tr',
      { 'data-run-id': s.id },
      el('td', {}, s.name),
      el('td', {}, statusPill(s.status, s.statusReason)),
      el('td', {}, `${exact(s.progress.current_steps)}${s.progress.total_steps ? ` / ${s.progress.total_steps}` : ''}`),
      el('td', {}, exact(s.last.loss)),
      ...lastEvalKeys.map((k) => el('td', {}, exact(s.last.eval[k]))),
      el('td', {}, compact(s.last.throughput)),
    )
    row.style.cursor = 'pointer'
    row.onclick = () => select(s.id)
    return row
  })
  $('compare-view').replaceChildren(
    el('div', { class: 'run-head' }, el('h1', {}, `Compare ${all.length} runs`)),
    el('div', { class: 'sub' }, 'The same chart, one series per run. Click a run for its detail.'),
    el('table', { class: 'compare', id: 'compare-table' }, header, ...rows),
    el(
      'div',
      { class: 'charts' },
      chart({ id: 'compare-loss', title: 'Training loss', yLabel: 'loss', series: per('loss') }),
      ...evalKeys.map((k) => {
        const name = evalName(k.slice(5))
        const series = per(k, true)
        return chart({ id: `compare-eval-${name}`, title: `Eval loss: ${name}`, yLabel: 'eval loss', series })
      }),
      chart({ id: 'compare-lr', title: 'Learning rate', yLabel: 'lr', series: per('lr') }),
      chart({ id: 'compare-throughput', title: 'Throughput', yLabel: 'tokens / s', series: per('throughput') }),
    ),
  )
}

function render(): void {
  const view = current()
  renderList(view)
  $('empty-state').hidden = view !== null
  $('run-view').hidden = view === null || view === COMPARE
  $('compare-view').hidden = view !== COMPARE
  if (view === null) {
    renderEmpty()
    return
  }
  if (view === COMPARE) {
    for (const run of runs.values()) if (!run.detail) void loadDetail(run, 600)
    renderCompare()
    return
  }
  const run = runs.get(view)!
  if (!run.detail) void loadDetail(run)
  renderRun(run)
}

function connect(): void {
  const events = new EventSource('/api/events')
  const live = $('live')
  events.onopen = () => ((live.dataset.state = 'live'), (live.textContent = 'live'))
  events.onerror = () => ((live.dataset.state = 'offline'), (live.textContent = 'board unreachable: retrying'))
  events.addEventListener('runs', (e) => updateList(JSON.parse((e as MessageEvent<string>).data) as RunList))
  events.addEventListener('records', (e) => append(JSON.parse((e as MessageEvent<string>).data) as AppendedRecords))
}

// A failure in the page is shown on it, not only in a console nobody opens.
const showError = (message: string) => {
  const banner = $('page-error')
  banner.hidden = false
  banner.textContent = `The board page failed: ${message}`
}
addEventListener('error', (e) => showError(e.message))
addEventListener('unhandledrejection', (e) => showError(String((e.reason as Error)?.message ?? e.reason)))

connect()
