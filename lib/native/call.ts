/**
 * Native errors arrive from a worker thread with no JavaScript stack. `callNative` captures the caller's stack
 * before the call and re-throws the native message as a LlamaproError carrying that stack, so the trace points
 * at the user's line, not at an anonymous Promise.
 */
import { LlamaproError, isErrorCode } from '../errors.js'

function rethrow(error: unknown, site: Error, what: string): never {
  const message = error instanceof Error ? error.message : String(error)
  // The addon sets `code` by the C++ exception's type (native/async_work.h); a JS TypeError from an argument
  // conversion, or anything else without a known code, is LLAMAPRO_NATIVE.
  const code = (error as { code?: unknown } | null)?.code
  const out = new LlamaproError(isErrorCode(code) ? code : 'LLAMAPRO_NATIVE', `${what}: ${message}`, { cause: error })
  out.stack = `${out.name}: ${out.message}\n${(site.stack ?? '').split('\n').slice(1).join('\n')}`
  throw out
}

export async function callNative<T>(what: string, fn: () => Promise<T>): Promise<T> {
  const site = new Error()
  try {
    return await fn()
  } catch (error) {
    rethrow(error, site, what)
  }
}

export function callNativeSync<T>(what: string, fn: () => T): T {
  const site = new Error()
  try {
    return fn()
  } catch (error) {
    rethrow(error, site, what)
  }
}
