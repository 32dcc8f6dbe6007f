/** Containment checks for the board: every path it opens is resolved (symlinks followed) and must stay inside. */
import { isAbsolute, relative, sep } from 'node:path'

/** True when `child` is `parent` or below it; both must be real paths (realpath). */
export function isInside(child: string, parent: string): boolean {
  const rel = relative(parent, child)
  return rel === '' || (rel.split(sep)[0] !== '..' && !isAbsolute(rel))
}
