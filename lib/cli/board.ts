import { stat } from 'node:fs/promises'
import { UsageError } from '../errors.js'
import { findRuns } from '../board/discover.js'
import { startBoard } from '../board/server.js'
import { interruptSignal, parseArgs, parseInteger } from './args.js'

export const BOARD_HELP = `llamapro board [dir ...] [--port N] [--host H] [--wait]

A local web page over training output folders, live while the runs write: each run's status (running, finished,
interrupted, stopped), progress and time left, loss and learning-rate curves, the eval loss of each dataset on one
chart (learned vs kept), the gradient norm of each trainable layer (expanded blocks marked), throughput, its
training_args.yaml and the end of running_log.txt. Several runs (a sweep's --out) are also overlaid on the same
charts. Read-only: it serves nothing outside the folders given and writes nothing. Stop it with Ctrl-C.

  dir           a run folder (a training output_dir: it holds trainer_log.jsonl), or a folder of runs such as
                a sweep's --out, watched for runs that appear later (default: the current folder)
  --port N      the port to listen on (default 6006; 0: any free port)
  --host H      the address to listen on (default 127.0.0.1: this machine only; 0.0.0.0 shows the runs to
                your network, without a password)
  --wait        start even when no folder holds a run yet (a run or sweep about to start)

Open the URL it prints in a browser. The same server from code: startBoard({ dirs, port, host }).`

export async function runBoard(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    strict: true,
    options: {
      port: { type: 'string', default: '6006' },
      host: { type: 'string', default: '127.0.0.1' },
      wait: { type: 'boolean', default: false },
    },
  })
  const port = parseInteger(values.port, '--port', { min: 0 })!
  if (port > 65535) throw new UsageError(`--port must be at most 65535, got ${port}`)
  const dirs = positionals.length ? positionals : ['.']
  for (const dir of dirs) {
    const info = await stat(dir).catch(() => null)
    if (!info?.isDirectory()) {
      const what = info ? 'not a folder' : 'no such folder'
      throw new UsageError(`${dir}: ${what}; give a training output_dir or a folder of runs`)
    }
  }
  if (!values.wait) {
    const counts = await Promise.all(dirs.map(async (dir) => (await findRuns(dir)).length))
    if (counts.every((n) => n === 0)) {
      throw new UsageError(
        `no training run in ${dirs.join(', ')}: a run folder holds trainer_log.jsonl (the output_dir of llamapro ` +
          "train or LLaMA-Factory, or a sweep's --out with its runs). Give such a folder, or add --wait to watch " +
          'for a run that is about to start',
      )
    }
  }
  const interrupt = interruptSignal()
  try {
    const board = await startBoard({ dirs, port, host: values.host, signal: interrupt.signal })
    console.log(`llamapro board: ${board.url}  (watching ${dirs.join(', ')}; Ctrl-C to stop)`)
    if (values.host === '0.0.0.0' || values.host === '::') {
      console.log('llamapro board: listening on every network interface, without a password')
    }
    await new Promise<void>((resolve) => interrupt.signal.addEventListener('abort', () => resolve(), { once: true }))
    await board.close()
    return 0
  } finally {
    interrupt.dispose()
  }
}
