import { createRequire } from 'node:module'

const require = createRequire(import.meta.url)

/** llamapro's own version, from package.json (one folder up from both lib/ and dist/). */
export const VERSION: string = (require('../package.json') as { version: string }).version
