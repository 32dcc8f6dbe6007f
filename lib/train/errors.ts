/** Errors of `llamapro train`: a configuration, data, policy or run problem, with an LLAMAPRO_* code. */
import { type ErrorCode, LlamaproError } from '../errors.js'

export class TrainingError extends LlamaproError {
  constructor(code: ErrorCode, message: string) {
    super(code, message)
    this.name = 'TrainingError'
  }
}

/** A training configuration key (YAML, override or a file it names) that is unknown, mistyped or out of range. */
export class ConfigKeyError extends LlamaproError {
  constructor(message: string) {
    super('LLAMAPRO_TRAIN_CONFIG', message)
    this.name = 'ConfigKeyError'
  }
}
