/** Errors of `llamapro train`: a configuration, data, policy or run problem, with an LLAMAPRO_* code. */
import { LlamaproError } from '../errors.js'

export class TrainingError extends LlamaproError {
  constructor(code: string, message: string) {
    super(code, message)
    this.name = 'TrainingError'
  }
}
