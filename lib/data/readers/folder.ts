/**
 * A dataset path as LLaMA-Factory 0.9.5 resolves it (data/loader.py, extras/constants.py FILEEXT2TYPE): a file, or
 * a folder whose files (every entry, as os.listdir lists them) all have one type, known from the extension.
 * llamapro sorts a folder's files by name so shards are read in order (os.listdir's order is the file system's).
 */
import { readdir, stat } from 'node:fs/promises'
import { extname, join } from 'node:path'
import { DatasetError } from './record.js'

export type DatasetFormat = 'json' | 'parquet' | 'csv' | 'text' | 'arrow'

/** LLaMA-Factory's FILEEXT2TYPE: extension (case as written) → `datasets` loader. */
export const FILE_TYPES: Readonly<Record<string, DatasetFormat>> = {
  arrow: 'arrow',
  csv: 'csv',
  json: 'json',
  jsonl: 'json',
  parquet: 'parquet',
  txt: 'text',
}

const ALLOWED = Object.keys(FILE_TYPES)
  .map((e) => `.${e}`)
  .join(', ')

export const formatOf = (file: string): DatasetFormat | undefined => FILE_TYPES[extname(file).slice(1)]

export async function resolveFiles(
  path: string,
  name: string,
): Promise<{ files: string[]; format: DatasetFormat; sizes: number[] }> {
  const info = await stat(path)
  if (!info.isDirectory()) {
    const format = formatOf(path)
    if (!format)
      throw new DatasetError(
        `dataset "${name}": ${path} has no known file type (allowed: ${ALLOWED}, as LLaMA-Factory's)`,
      )
    return { files: [path], format, sizes: [info.size] }
  }
  const names = (await readdir(path)).sort()
  if (names.length === 0) throw new DatasetError(`dataset "${name}": the folder ${path} is empty`)
  const files = names.map((n) => join(path, n))
  const sizes: number[] = []
  const byType = new Map<string, string[]>()
  for (const file of files) {
    const entry = await stat(file)
    if (entry.isDirectory()) {
      throw new DatasetError(
        `dataset "${name}": the folder ${path} holds a folder, ${file}: a dataset folder must hold only data files ` +
          `of one type (LLaMA-Factory's rule)`,
      )
    }
    sizes.push(entry.size)
    const type = formatOf(file) ?? `unknown type "${extname(file) || 'no extension'}"`
    byType.set(type, [...(byType.get(type) ?? []), file.slice(path.length + 1)])
  }
  if (byType.size > 1 || !formatOf(files[0]!)) {
    const list = [...byType].map(
      ([type, members]) =>
        `${type}: ${members.slice(0, 5).join(', ')}${members.length > 5 ? ` and ${members.length - 5} more` : ''}`,
    )
    throw new DatasetError(
      `dataset "${name}": the files of a dataset folder must all have one type (LLaMA-Factory's rule; allowed: ` +
        `${ALLOWED}), and ${path} has ${list.join('; ')}`,
    )
  }
  return { files, format: formatOf(files[0]!)!, sizes }
}
