/**
 * `report_to`, read as transformers' TrainingArguments reads it: a name, a comma list or a YAML list; `all` means
 * every integration there is (here: TensorBoard, the one llamapro writes itself), `none` nothing. Integrations that
 * need a service or a Python package (wandb, mlflow, swanlab, …) cannot be served from Node: one warning names
 * them and what is supported, and the run goes on, as a LLaMA-Factory YAML that names them should still train.
 */
import { ConfigKeyError } from './errors.js'

/** Where llamapro reports, besides trainer_log.jsonl and running_log.txt. */
export type ReportTarget = 'tensorboard'

export const SUPPORTED_REPORT_TARGETS: readonly ReportTarget[] = ['tensorboard']

/** transformers' integrations (transformers.integrations.integration_utils) that llamapro does not serve. */
const OTHER_INTEGRATIONS = [
  'azure_ml',
  'clearml',
  'codecarbon',
  'comet_ml',
  'dagshub',
  'dvclive',
  'flyte',
  'mlflow',
  'neptune',
  'swanlab',
  'trackio',
  'wandb',
]

export function parseReportTo(value: string, where: string): { reportTo: ReportTarget[]; warnings: string[] } {
  const names = value
    .split(',')
    .map((name) => name.trim())
    .filter(Boolean)
  const targets = new Set<ReportTarget>()
  const unserved: string[] = []
  for (const name of names) {
    if (name === 'none') continue
    if (name === 'all' || name === 'tensorboard') targets.add('tensorboard')
    else if (OTHER_INTEGRATIONS.includes(name)) unserved.push(name)
    else {
      const valid = ['none', 'all', ...SUPPORTED_REPORT_TARGETS, ...OTHER_INTEGRATIONS].join(', ')
      throw new ConfigKeyError(
        `${where}: report_to: "${name}" is not an integration transformers knows (valid: ${valid})`,
      )
    }
  }
  if (names.includes('none') && names.length > 1) {
    throw new ConfigKeyError(
      `${where}: report_to: "none" cannot be combined with other values, got ${JSON.stringify(value)}`,
    )
  }
  const warnings =
    unserved.length > 0
      ? [
          `report_to: ${unserved.join(', ')} cannot be served by llamapro (it needs a Python package or a service); ` +
            `supported: ${SUPPORTED_REPORT_TARGETS.join(', ')} (plus trainer_log.jsonl, running_log.txt and llamapro ` +
            `board, always)`,
        ]
      : []
  return { reportTo: [...targets], warnings }
}
