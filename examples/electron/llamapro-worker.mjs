// The training side of the Electron example: runs in Electron's utilityProcess (a Node child process with
// process.parentPort), so LibTorch never runs in the main process or the window. Speaks plain messages:
//
//   in:  { type: 'train', config: {LLaMA-Factory keys...}, baseDir }   start a run (one at a time)
//        { type: 'stop' }                                            stop after the current step; a checkpoint is saved
//        { type: 'generate', model, prompt, maxNewTokens }            stream a reply token by token
//   out: { type: 'ready', libtorch, addon }                          llamapro loaded (from the bundle)
//        { type: 'train-output', outputDir }      where the run writes (main.js shows the board over it)
//        { type: 'train-event', event }           every TrainEvent: 'start', 'step' (a loss point), 'log', ...
//        { type: 'train-done', result }           { aborted, globalStep, checkpoints, outputDir, trainLoss }
//        { type: 'token', text }  then  { type: 'generate-done', text, finishReason }
//        { type: 'error', during, code, message }
//
// LLAMAPRO_ADDON_DIR (set by main.js) points llamapro at the bundle shipped with the app. LLAMAPRO_MODULE lets a
// test load llamapro from a checkout instead of node_modules.
const port = process.parentPort
if (!port) throw new Error('llamapro-worker.mjs runs under Electron utilityProcess.fork (it needs process.parentPort)')

const llamapro = await import(process.env.LLAMAPRO_MODULE ?? 'llamapro')
const { train, parseTrainConfig, LlamaModel, generateStream, info, loadedAddon } = llamapro

let running = null // the AbortController of the run in progress

const post = (message) => port.postMessage(message)
const fail = (during, error) =>
  post({ type: 'error', during, code: error?.code ?? null, message: error?.message ?? String(error) })

async function runTraining({ config, baseDir }) {
  if (running) return fail('train', new Error('a training run is already in progress; send stop first'))
  running = new AbortController()
  try {
    const parsed = parseTrainConfig(config, 'the training form', baseDir ?? process.cwd())
    post({ type: 'train-output', outputDir: parsed.outputDir })
    const result = await train(parsed, {
      signal: running.signal,
      onEvent: (event) => post({ type: 'train-event', event }),
    })
    const { aborted, globalStep, totalSteps, checkpoints, outputDir, trainLoss } = result
    post({ type: 'train-done', result: { aborted, globalStep, totalSteps, checkpoints, outputDir, trainLoss } })
  } catch (error) {
    fail('train', error)
  } finally {
    running = null
  }
}

async function runGeneration({ model: dir, prompt, maxNewTokens }) {
  let model
  try {
    model = await LlamaModel.load(dir)
    const stream = generateStream(model, prompt, { maxNewTokens: maxNewTokens ?? 64 })
    for (;;) {
      const next = await stream.next()
      if (next.done) {
        post({ type: 'generate-done', text: next.value.text, finishReason: next.value.finishReason })
        break
      }
      if (next.value.text) post({ type: 'token', text: next.value.text })
    }
  } catch (error) {
    fail('generate', error)
  } finally {
    model?.dispose()
  }
}

port.on('message', ({ data }) => {
  if (data?.type === 'train') void runTraining(data)
  else if (data?.type === 'stop') running?.abort()
  else if (data?.type === 'generate') void runGeneration(data)
  else fail('message', new Error(`unknown message ${JSON.stringify(data?.type)} (valid: train, stop, generate)`))
})

try {
  post({ type: 'ready', libtorch: info().libtorch.version, addon: loadedAddon()?.file ?? null })
} catch (error) {
  fail('load', error) // a missing or mismatched bundle: the window shows the named error
}
