// Electron main process: one window, and one utilityProcess that runs llamapro (llamapro-worker.mjs). LibTorch
// never runs here or in the window, so the UI never waits on it. Messages are relayed both ways:
// window --ipc--> main --postMessage--> worker, and back.
const { app, BrowserWindow, ipcMain, utilityProcess } = require('electron')
const { join } = require('node:path')

// The bundle written by `npx llamapro bundle llamapro-bundle` before packaging. In a packaged app it is outside
// app.asar (package.json lists it in asarUnpack): shared libraries cannot be loaded from inside an archive.
function bundleDir() {
  return app.isPackaged ? join(process.resourcesPath, 'app.asar.unpacked', 'llamapro-bundle') : join(__dirname, 'llamapro-bundle')
}

let window
let worker

function startWorker() {
  worker = utilityProcess.fork(join(__dirname, 'llamapro-worker.mjs'), [], {
    serviceName: 'llamapro',
    env: { ...process.env, LLAMAPRO_ADDON_DIR: bundleDir() },
    stdio: 'inherit',
  })
  worker.on('message', (message) => window?.webContents.send('llamapro', message))
  worker.on('exit', (code) => {
    window?.webContents.send('llamapro', { type: 'error', during: 'worker', code: null, message: `the llamapro process ended (exit code ${code})` })
    worker = undefined
  })
}

app.whenReady().then(() => {
  window = new BrowserWindow({
    width: 900,
    height: 700,
    webPreferences: { preload: join(__dirname, 'preload.js'), contextIsolation: true, nodeIntegration: false },
  })
  window.loadFile(join(__dirname, 'index.html'))
  startWorker()
  // Only these three messages go through, with plain data.
  ipcMain.on('llamapro:train', (_event, config) => worker?.postMessage({ type: 'train', config, baseDir: app.getPath('userData') }))
  ipcMain.on('llamapro:stop', () => worker?.postMessage({ type: 'stop' }))
  ipcMain.on('llamapro:generate', (_event, request) => worker?.postMessage({ type: 'generate', ...request }))
})

app.on('window-all-closed', () => {
  worker?.kill()
  app.quit()
})
