/**
 * `llamapro board`: a local, read-only web page over training output folders, live while runs write. Node's http
 * only; the page and its scripts ship in the package (dist/), nothing is fetched from elsewhere. It answers GET and
 * HEAD on a fixed set of routes, and serves files only from inside the folders it was given, after resolving links.
 */
import { createReadStream } from 'node:fs'
import { realpath, stat } from 'node:fs/promises'
import { type IncomingMessage, type ServerResponse, createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { basename, extname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { LlamaproError } from '../errors.js'
import { findRuns } from './discover.js'
import { BOARD_CSS, boardPage } from './page.js'
import { isInside } from './paths.js'
import { RunFolder } from './run-folder.js'
import { MAX_DRAWN_POINTS } from './series.js'
import type { RunList, RunSummary } from './wire.js'

export interface BoardOptions {
  /** Run folders, or folders holding runs (a sweep's --out). */
  dirs: string[]
  /** 0 (the default here; the CLI's is 6006): any free port. */
  port?: number
  /** 127.0.0.1 unless given: the board is for this machine. */
  host?: string
  /** Closes the board when aborted. */
  signal?: AbortSignal
}

export interface Board {
  url: string
  port: number
  close(): Promise<void>
}

/** dist/ of the package, from lib/board (tsx) as from dist/board (built): the browser gets the built modules. */
const DIST = fileURLToPath(new URL('../../dist/', import.meta.url))
/**
 * The scripts the page may load: the board's browser modules and the package modules they import (the chart code
 * is the package's own, lib/util/chart.ts). One folder level, a plain name, .js: nothing else under /assets.
 */
const ASSET_PATH = /^\/assets\/((?:board\/client|board|util)\/[a-z][\w-]*\.js)$/
/** What the files route serves from a run folder: the logs, results and plots, not model weights. */
const FILE_TYPES: Record<string, string> = {
  '.json': 'application/json; charset=utf-8',
  '.jsonl': 'text/plain; charset=utf-8',
  '.txt': 'text/plain; charset=utf-8',
  '.yaml': 'text/plain; charset=utf-8',
  '.yml': 'text/plain; charset=utf-8',
  '.md': 'text/plain; charset=utf-8',
  '.csv': 'text/plain; charset=utf-8',
  '.png': 'image/png',
  '.svg': 'image/svg+xml',
}
const TICK_MS = 1000
const RESCAN_TICKS = 3
const LOOPBACK_NAMES = new Set(['localhost', '127.0.0.1', '[::1]'])

interface Root {
  dir: string
  given: string
}

class NotFound extends Error {}

export async function startBoard(options: BoardOptions): Promise<Board> {
  const folderError = (message: string) => new LlamaproError('LLAMAPRO_BOARD_FOLDER', message)
  if (!options.dirs.length) throw folderError('startBoard needs at least one folder in dirs')
  const roots: Root[] = []
  for (const given of options.dirs) {
    let dir
    try {
      dir = await realpath(given)
    } catch {
      throw folderError(
        `${given}: no such folder; give a training output_dir (it holds trainer_log.jsonl) or a folder of runs ` +
          "such as a sweep's --out",
      )
    }
    if (!(await stat(dir)).isDirectory()) {
      throw folderError(`${given} is a file; give the folder of a training run (its output_dir)`)
    }
    roots.push({ dir, given })
  }
  const host = options.host ?? '127.0.0.1'
  const state = new BoardState(roots)
  await state.rescan()

  const server = createServer((request, response) => {
    handle(state, host, request, response).catch((error: unknown) => {
      if (error instanceof NotFound) return send(response, 404, TEXT, 'not found\n')
      if (!response.headersSent) send(response, 500, TEXT, `board error: ${(error as Error).message}\n`)
      else response.destroy()
    })
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', (error: NodeJS.ErrnoException) => {
      const port = options.port ?? 0
      const portError = (message: string) => new LlamaproError('LLAMAPRO_BOARD_PORT', message)
      if (error.code === 'EADDRINUSE') {
        reject(portError(`port ${port} is in use; choose another with --port (0: any free port)`))
      } else if (error.code === 'EACCES') {
        reject(portError(`port ${port} needs privileges; choose one above 1023 with --port`))
      } else if (error.code === 'EADDRNOTAVAIL' || error.code === 'ENOTFOUND') {
        reject(new LlamaproError('LLAMAPRO_BOARD_HOST', `--host ${host} is not an address of this machine`))
      } else reject(error)
    })
    server.listen(options.port ?? 0, host, () => resolve())
  })
  const port = (server.address() as AddressInfo).port
  const shown = host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host.includes(':') ? `[${host}]` : host
  let closed: Promise<void> | undefined
  const close = () =>
    (closed ??= new Promise<void>((resolve) => {
      state.stop()
      server.close(() => resolve())
      server.closeAllConnections()
    }))
  options.signal?.addEventListener('abort', () => void close(), { once: true })
  if (options.signal?.aborted) await close()
  return { url: `http://${shown}:${port}/`, port, close }
}

/** The runs found so far, their readers, and the pages listening for news. */
class BoardState {
  private readonly runs = new Map<string, RunFolder>()
  private readonly clients = new Set<ServerResponse>()
  private timer: NodeJS.Timeout | undefined
  private ticks = 0
  private lastScan = 0
  private lastSummaries = ''

  constructor(readonly roots: Root[]) {}

  async rescan(): Promise<void> {
    this.lastScan = Date.now()
    for (const [index, root] of this.roots.entries()) {
      for (const found of await findRuns(root.dir)) {
        const id = this.roots.length > 1 ? `${index}:${found.relative}` : found.relative || '.'
        if (this.runs.has(id)) continue
        const named = this.roots.length > 1 || !found.relative
        const name = named ? [basename(root.dir), found.relative].filter(Boolean).join('/') : found.relative
        const onAppend = (run: RunFolder, records: Record<string, unknown>[], from: number, reset: boolean) =>
          this.broadcast('records', { id: run.id, from, reset, records })
        this.runs.set(id, new RunFolder(id, found.dir, name, onAppend))
      }
    }
  }

  list(): RunFolder[] {
    return [...this.runs.values()]
  }

  run(id: string | null): RunFolder | undefined {
    return id === null ? undefined : this.runs.get(id)
  }

  async refreshAll(): Promise<RunSummary[]> {
    if (Date.now() - this.lastScan > 1000) await this.rescan()
    const runs = this.list()
    await Promise.all(runs.map((r) => r.refresh()))
    return Promise.all(runs.map((r) => r.summary()))
  }

  describe(summaries: RunSummary[]): RunList {
    return { roots: this.roots.map((r) => r.given), runs: summaries }
  }

  subscribe(response: ServerResponse): void {
    this.clients.add(response)
    response.on('close', () => {
      this.clients.delete(response)
      if (!this.clients.size) this.stopTicking()
    })
    this.timer ??= setInterval(() => void this.tick(), TICK_MS)
  }

  private async tick(): Promise<void> {
    if (++this.ticks % RESCAN_TICKS === 0) await this.rescan()
    const runs = this.list()
    await Promise.all(runs.map((r) => r.refresh()))
    // Summaries go out when anything changed, a status included (a process that died writes nothing).
    const summaries = JSON.stringify(this.describe(await Promise.all(runs.map((r) => r.summary()))))
    if (summaries !== this.lastSummaries) {
      this.lastSummaries = summaries
      this.broadcastRaw('runs', summaries)
    } else if (this.ticks % 15 === 0) {
      for (const client of this.clients) client.write(': keep-alive\n\n')
    }
  }

  private broadcast(event: string, data: unknown): void {
    if (this.clients.size) this.broadcastRaw(event, JSON.stringify(data))
  }

  private broadcastRaw(event: string, json: string): void {
    for (const client of this.clients) client.write(`event: ${event}\ndata: ${json}\n\n`)
  }

  private stopTicking(): void {
    clearInterval(this.timer)
    this.timer = undefined
  }

  stop(): void {
    this.stopTicking()
    for (const client of this.clients) client.end()
    this.clients.clear()
  }
}

const TEXT = 'text/plain; charset=utf-8'
const SECURITY_HEADERS = {
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'cache-control': 'no-store',
}
const PAGE_POLICY =
  "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'"

function send(response: ServerResponse, status: number, type: string, body: string, headers = {}) {
  const length = Buffer.byteLength(body)
  response.writeHead(status, { ...SECURITY_HEADERS, 'content-type': type, 'content-length': length, ...headers })
  response.end(response.req.method === 'HEAD' ? undefined : body)
}

const sendJson = (response: ServerResponse, value: unknown) =>
  send(response, 200, 'application/json; charset=utf-8', JSON.stringify(value))

/** A request for a loopback board must name a loopback host: a web page whose name resolves here gets nothing. */
function hostAllowed(request: IncomingMessage, bound: string): boolean {
  if (!['127.0.0.1', '::1', 'localhost'].includes(bound)) return true
  const header = request.headers.host ?? ''
  const name = header.startsWith('[') ? header.slice(0, header.indexOf(']') + 1) : header.split(':')[0]!
  return LOOPBACK_NAMES.has(name.toLowerCase())
}

async function handle(state: BoardState, host: string, request: IncomingMessage, response: ServerResponse) {
  if (request.method !== 'GET' && request.method !== 'HEAD') {
    return send(response, 405, TEXT, 'the board is read-only: GET and HEAD only\n', { allow: 'GET, HEAD' })
  }
  if (!hostAllowed(request, host)) return send(response, 403, TEXT, 'the board answers requests for localhost only\n')
  const raw = request.url ?? '/'
  if (!raw.startsWith('/') || raw.includes('\0')) throw new NotFound()
  const url = new URL(raw, 'http://board.invalid')
  // The raw path, before the URL parser's dot-segment removal: /assets/../x must not become /x.
  const path = raw.split('?')[0]!
  if (path === '/' || path === '/index.html') {
    return send(response, 200, 'text/html; charset=utf-8', boardPage(), { 'content-security-policy': PAGE_POLICY })
  }
  if (path === '/assets/board.css') return send(response, 200, 'text/css; charset=utf-8', BOARD_CSS)
  const asset = ASSET_PATH.exec(path)?.[1]
  if (asset) return sendFile(response, join(DIST, asset), DIST, 'text/javascript; charset=utf-8')
  if (path === '/api/runs') return sendJson(response, state.describe(await state.refreshAll()))
  if (path === '/api/run') {
    const run = state.run(url.searchParams.get('id'))
    if (!run) throw new NotFound()
    await run.refresh()
    const asked = Number(url.searchParams.get('points') ?? MAX_DRAWN_POINTS)
    const points = Number.isInteger(asked) && asked >= 16 && asked <= MAX_DRAWN_POINTS ? asked : MAX_DRAWN_POINTS
    return sendJson(response, await run.detail(points))
  }
  if (path === '/api/events') {
    const summaries = await state.refreshAll()
    const stream = { 'content-type': 'text/event-stream; charset=utf-8', connection: 'keep-alive' }
    response.writeHead(200, { ...SECURITY_HEADERS, ...stream })
    if (request.method === 'HEAD') return void response.end()
    response.write(`retry: 2000\nevent: runs\ndata: ${JSON.stringify(state.describe(summaries))}\n\n`)
    return state.subscribe(response)
  }
  if (path.startsWith('/files/')) return sendRunFile(state, path.slice('/files/'.length).split('/'), response)
  throw new NotFound()
}

/** /files/<root index>/<path inside it>: each segment decoded once; no dot segments, separators or NUL inside. */
async function sendRunFile(state: BoardState, segments: string[], response: ServerResponse): Promise<void> {
  const root = state.roots[Number(segments[0])]
  if (!root || !/^\d+$/.test(segments[0]!) || segments.length < 2) throw new NotFound()
  const parts = segments.slice(1).map((segment) => {
    let part
    try {
      part = decodeURIComponent(segment)
    } catch {
      throw new NotFound()
    }
    if (!part || part === '.' || part === '..' || /[/\\\0]/.test(part)) throw new NotFound()
    return part
  })
  const type = FILE_TYPES[extname(parts.at(-1)!).toLowerCase()]
  if (!type) throw new NotFound()
  return sendFile(response, join(root.dir, ...parts), root.dir, type, "default-src 'none'; style-src 'unsafe-inline'")
}

async function sendFile(response: ServerResponse, path: string, inside: string, type: string, policy?: string) {
  let real
  try {
    real = await realpath(path)
  } catch {
    throw new NotFound()
  }
  // Links are followed, then the target must still be inside: a link out of a run folder is not served.
  const info = await stat(real)
  if (!isInside(real, await realpath(inside)) || !info.isFile()) throw new NotFound()
  const headers = { ...SECURITY_HEADERS, 'content-type': type, 'content-length': info.size }
  response.writeHead(200, policy ? { ...headers, 'content-security-policy': policy } : headers)
  if (response.req.method === 'HEAD') return void response.end()
  await new Promise<void>((resolve, reject) => {
    createReadStream(real).on('error', reject).pipe(response).on('finish', resolve).on('error', reject)
  })
}
