/**
 * Every failure a user can cause is a LlamaproError with a stable `code`, a message that names the file, key,
 * flag or value at fault and says what would be valid.
 */
export class LlamaproError extends Error {
  readonly code: string

  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.name = 'LlamaproError'
    this.code = code
  }
}

/** Wrong command-line usage: the CLI exits with status 2 for these. */
export class UsageError extends LlamaproError {
  constructor(message: string) {
    super('LLAMAPRO_USAGE', message)
    this.name = 'UsageError'
  }
}

export const errorMessage = (error: unknown): string => (error instanceof Error ? error.message : String(error))
