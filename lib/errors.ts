/**
 * Every failure a user can cause is a LlamaproError with a stable `code` (one of lib/error-codes.ts), a message
 * that names the file, key, flag or value at fault and says what would be valid.
 */
import { type ErrorCode, isErrorCode } from './error-codes.js'

export { ERROR_CODES, type ErrorCode, isErrorCode } from './error-codes.js'

export class LlamaproError extends Error {
  readonly code: ErrorCode

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
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

/** The user stopped the work (Ctrl-C, SIGTERM, or an AbortSignal): nothing was left half-written. */
export class InterruptedError extends LlamaproError {
  constructor(message = 'interrupted; nothing was left half-written') {
    super('LLAMAPRO_INTERRUPTED', message)
    this.name = 'InterruptedError'
  }
}

/** Errors from LibTorch and from lib/ carry one of the codes whether or not they are LlamaproError instances. */
export function isLlamaproCode(error: unknown): error is Error & { code: ErrorCode } {
  return error instanceof Error && isErrorCode((error as Error & { code?: unknown }).code)
}

export const errorMessage = (error: unknown): string => (error instanceof Error ? error.message : String(error))
