/**
 * The files of a Hugging Face model folder that are not weights or config.json, but without which the folder
 * is not usable: tokenizer files, generation settings and chat templates. Outputs copy them from their source.
 */
import { copyFile } from 'node:fs/promises'
import { existsSync } from 'node:fs'
import { join } from 'node:path'

export const SIDE_FILES = [
  'generation_config.json',
  'tokenizer.json',
  'tokenizer_config.json',
  'special_tokens_map.json',
  'added_tokens.json',
  'tokenizer.model',
  'vocab.json',
  'merges.txt',
  'chat_template.jinja',
  'chat_template.json',
  'llamapro_expansion.json',
] as const

/** Copies the side files present in `from` into `to`; returns the names copied. */
export async function copySideFiles(from: string, to: string): Promise<string[]> {
  const copied: string[] = []
  for (const name of SIDE_FILES) {
    if (!existsSync(join(from, name))) continue
    await copyFile(join(from, name), join(to, name))
    copied.push(name)
  }
  return copied
}
