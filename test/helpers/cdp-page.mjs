// Opens a page in headless Chromium and reads it through the Chrome DevTools Protocol: waits until an expression
// is true in the page, then returns the value of another (a snapshot of the DOM), the console messages and the
// uncaught exceptions, and optionally a screenshot. Runs as a child process under `node --experimental-websocket`
// (Node 20 has WebSocket only behind that flag). Usage:
//   node --experimental-websocket cdp-page.mjs '{"url", "waitFor", "snapshot", "screenshot"?, "width"?, "height"?,
//                                                "timeoutMs"?, "chromium"?}'
// Prints one JSON line: { ok, value, console, exceptions, error? }.
import { spawn } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

const options = JSON.parse(process.argv[2])
const timeoutMs = options.timeoutMs ?? 60_000
const profile = mkdtempSync(join(tmpdir(), 'llamapro-cdp-'))
const browser = spawn(
  options.chromium ?? 'chromium',
  [
    '--headless',
    '--no-sandbox',
    '--disable-gpu',
    '--disable-dev-shm-usage',
    '--no-first-run',
    '--remote-debugging-port=0',
    `--user-data-dir=${profile}`,
    `--window-size=${options.width ?? 1400},${options.height ?? 1000}`,
    'about:blank',
  ],
  { stdio: 'ignore' },
)
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))
const deadline = Date.now() + timeoutMs
const consoleLines = []
const exceptions = []

async function devtoolsPort() {
  while (Date.now() < deadline) {
    try {
      return Number(readFileSync(join(profile, 'DevToolsActivePort'), 'utf8').split('\n')[0])
    } catch {
      await sleep(100)
    }
  }
  throw new Error('Chromium did not open its DevTools port')
}

async function main() {
  const port = await devtoolsPort()
  let target
  while (!target && Date.now() < deadline) {
    const targets = await (await fetch(`http://127.0.0.1:${port}/json/list`)).json()
    target = targets.find((t) => t.type === 'page')
    if (!target) await sleep(100)
  }
  const socket = new WebSocket(target.webSocketDebuggerUrl)
  await new Promise((resolve, reject) => {
    socket.onopen = resolve
    socket.onerror = () => reject(new Error('DevTools socket failed'))
  })
  let nextId = 1
  const pending = new Map()
  socket.onmessage = (message) => {
    const data = JSON.parse(message.data)
    if (data.id && pending.has(data.id)) {
      const { resolve, reject } = pending.get(data.id)
      pending.delete(data.id)
      return data.error ? reject(new Error(data.error.message)) : resolve(data.result)
    }
    if (data.method === 'Runtime.consoleAPICalled') {
      consoleLines.push(`${data.params.type}: ${data.params.args.map((a) => a.value ?? a.description).join(' ')}`)
    }
    if (data.method === 'Runtime.exceptionThrown') {
      const details = data.params.exceptionDetails
      exceptions.push(details.exception?.description ?? details.text)
    }
  }
  const send = (method, params = {}) =>
    new Promise((resolve, reject) => {
      const id = nextId++
      pending.set(id, { resolve, reject })
      socket.send(JSON.stringify({ id, method, params }))
    })
  const evaluate = async (expression) => {
    const request = { expression, returnByValue: true, awaitPromise: true }
    const { result, exceptionDetails: failed } = await send('Runtime.evaluate', request)
    if (failed) throw new Error(`${expression}: ${failed.exception?.description ?? failed.text}`)
    return result.value
  }
  await send('Runtime.enable')
  await send('Page.enable')
  const [width, height] = [options.width ?? 1400, options.height ?? 1000]
  await send('Emulation.setDeviceMetricsOverride', { width, height, deviceScaleFactor: 1, mobile: false })
  await send('Page.navigate', { url: options.url })
  let ready = false
  while (!ready && Date.now() < deadline) {
    ready = Boolean(await evaluate(options.waitFor).catch(() => false))
    if (!ready) await sleep(100)
  }
  if (!ready) throw new Error(`the page did not reach ${options.waitFor} within ${timeoutMs} ms`)
  if (options.settleMs) await sleep(options.settleMs)
  const value = await evaluate(options.snapshot)
  if (options.screenshot) {
    const shot = { format: 'png', captureBeyondViewport: Boolean(options.fullPage) }
    const { data } = await send('Page.captureScreenshot', shot)
    writeFileSync(options.screenshot, Buffer.from(data, 'base64'))
  }
  socket.close()
  return value
}

let exitCode = 0
try {
  const value = await main()
  process.stdout.write(`${JSON.stringify({ ok: true, value, console: consoleLines, exceptions })}\n`)
} catch (error) {
  process.stdout.write(`${JSON.stringify({ ok: false, error: error.message, console: consoleLines, exceptions })}\n`)
  exitCode = 1
} finally {
  browser.kill('SIGKILL')
  await sleep(200)
  rmSync(profile, { recursive: true, force: true })
}
process.exit(exitCode)
