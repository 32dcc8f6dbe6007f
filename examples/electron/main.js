// Electron main process: one window, and one utilityProcess that runs llamapro (llamapro-worker.mjs). LibTorch
// never runs here or in the window, so the UI never waits on it. Messages are relayed both ways:
// window --ipc--> main --postMessage--> worker, and back.
// The board (llamapro's live page over a run folder: llamapro/board, plain Node, no LibTorch) runs here, over the
// folder the worker trains into; the window shows it in a frame.
const { app, BrowserWindow, ipcMain, utilityProcess } = require('electron')
const { join } = require('node:path')

// The bundle written by `npx llamapro bundle llamapro-bundle` before packaging. In a packaged app it is outside
// app.asar (package.json lists it in asarUnpack): shared libraries cannot be loaded from inside an archive.
function bundleDir() {
  return app.isPackaged
    ? join(process.resourcesPath, 'app.asar.unpacked', 'llamapro-bundle')
    : join(__dirname, 'llamapro-bundle')
}

let window
let worker
let board // { url, close() } of the board over the current run's folder
let outputDir

// llamapro/board loads no addon and no LibTorch: only Node's http and the run folder's files.
async function showBoard(dir) {
  const { startBoard } = await import(process.env.LLAMAPRO_BOARD_MODULE ?? 'llamapro/board')
  await board?.close()
  board = await startBoard({ dirs: [dir], port: 0 })
  window?.webContents.send('llamapro', { type: 'board', url: board.url })
}

function startWorker() {
  worker = utilityProcess.fork(join(__dirname, 'llamapro-worker.mjs'), [], {
    serviceName: 'llamapro',
    env: { ...process.env, LLAMAPRO_ADDON_DIR: bundleDir() },
    stdio: 'inherit',
  })
  worker.on('message', (message) => {
    if (message.type === 'train-output') outputDir = message.outputDir
    // The run's folder exists once training has started: the board watches it from then on.
    if (message.type === 'train-event' && message.event.type === 'start' && outputDir) {
      showBoard(outputDir).catch((error) =>
        window?.webContents.send('llamapro', {
          type: 'error',
          during: 'board',
          code: error.code ?? null,
          message: error.message,
        }),
      )
    }
    window?.webContents.send('llamapro', message)
  })
  worker.on('exit', (code) => {
    window?.webContents.send('llamapro', {
      type: 'error',
      during: 'worker',
      code: null,
      message: `the llamapro process ended (exit code ${code})`,
    })
    worker = undefined
  })
}

app.whenReady().then(() => {
  window = new BrowserWindow({
    width: 1280,
    height: 900,
    webPreferences: { preload: join(__dirname, 'preload.js'), contextIsolation: true, nodeIntegration: false },
  })
  window.loadFile(join(__dirname, 'index.html'))
  startWorker()
  // Only these three messages go through, with plain data.
  ipcMain.on('llamapro:train', (_event, config) =>
    worker?.postMessage({ type: 'train', config, baseDir: app.getPath('userData') }),
  )
  ipcMain.on('llamapro:stop', () => worker?.postMessage({ type: 'stop' }))
  ipcMain.on('llamapro:generate', (_event, request) => worker?.postMessage({ type: 'generate', ...request }))
})

app.on('window-all-closed', () => {
  worker?.kill()
  void board?.close()
  app.quit()
})
