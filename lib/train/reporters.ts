/**
 * The reporters report_to asks for, opened for a run: TensorBoard's event file under logging_dir (default
 * transformers' `output_dir/runs/<date>_<host>`), with every log line's scalars and the configuration as text.
 */
import { stringify } from 'yaml'
import { TensorBoardWriter, defaultLoggingDir, tensorboardScalars } from '../report/tensorboard.js'
import type { TrainConfig } from './config.js'
import type { LogRecord } from './events.js'
import type { Reporter } from './run-log.js'

export interface OpenedReporters {
  reporters: Reporter[]
  /** The TensorBoard folder, when one was opened. */
  loggingDir: string | null
}

export async function openReporters(
  cfg: Pick<TrainConfig, 'reportTo' | 'loggingDir' | 'outputDir' | 'given'>,
  startStep: number,
): Promise<OpenedReporters> {
  if (!cfg.reportTo.includes('tensorboard')) return { reporters: [], loggingDir: null }
  const loggingDir = cfg.loggingDir ?? defaultLoggingDir(cfg.outputDir)
  const writer = await TensorBoardWriter.open(loggingDir)
  // As transformers' callback writes its arguments: the run's configuration, as given, on the text tab.
  writer.addText('args', `\`\`\`yaml\n${stringify(cfg.given)}\`\`\``, startStep)
  const reporter: Reporter = {
    log: (record: LogRecord) => writer.addScalars(tensorboardScalars(record), record.current_steps),
    close: () => writer.close(),
  }
  return { reporters: [reporter], loggingDir }
}
