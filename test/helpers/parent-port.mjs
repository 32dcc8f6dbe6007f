// Runs an Electron utilityProcess module under plain Node, in a child started with child_process.fork: gives it
// the process.parentPort Electron gives (an EventEmitter whose 'message' listeners receive { data, ports } and whose
// postMessage(value) reaches the parent), carried over the fork's IPC channel. Then imports the module in argv[2].
import { EventEmitter } from 'node:events'
import { pathToFileURL } from 'node:url'

const port = new EventEmitter()
process.on('message', (data) => port.emit('message', { data, ports: [] }))
port.postMessage = (message) => process.send(message)
process.parentPort = port
await import(pathToFileURL(process.argv[2]).href)
