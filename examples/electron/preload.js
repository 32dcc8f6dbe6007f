// The window's only door to llamapro: three requests and one message stream (contextIsolation keeps Node out).
const { contextBridge, ipcRenderer } = require('electron')

contextBridge.exposeInMainWorld('llamapro', {
  train: (config) => ipcRenderer.send('llamapro:train', config),
  stop: () => ipcRenderer.send('llamapro:stop'),
  generate: (model, prompt, maxNewTokens) => ipcRenderer.send('llamapro:generate', { model, prompt, maxNewTokens }),
  onMessage: (listener) => ipcRenderer.on('llamapro', (_event, message) => listener(message)),
})
