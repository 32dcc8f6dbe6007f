/** A tiny model folder with a real tokenizer (trained on the demo corpora) and data files, for training tests. */
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { writeTrainedTokenizer } from '../../lib/data/bpe-trainer.js'
import { corpusA, corpusB } from '../../lib/demo/corpora.js'
import { type TinyModel, type TinyModelOptions, writeTinyModel } from './tiny-model.js'

export async function writeTrainableModel(dir: string, options: TinyModelOptions = {}): Promise<TinyModel> {
  const vocab = await writeTrainedTokenizer(dir, [...corpusA(300, 11), ...corpusB(300, 12)], 320)
  return writeTinyModel(dir, {
    hidden: 48,
    intermediate: 96,
    heads: 4,
    kvHeads: 2,
    layers: 4,
    std: 0.05,
    ...options,
    vocab,
  })
}

/** pt data (text) and sft data (alpaca and sharegpt) from the demo corpora. */
export async function writeDatasets(dir: string): Promise<{ pt: string; alpaca: string; sharegpt: string }> {
  const pt = join(dir, 'code.jsonl')
  await writeFile(
    pt,
    `${corpusB(120, 5)
      .map((text) => JSON.stringify({ text }))
      .join('\n')}\n`,
  )
  const alpaca = join(dir, 'alpaca.json')
  await writeFile(
    alpaca,
    JSON.stringify(
      corpusB(60, 6).map((code) => {
        const [signature, body, check] = code.split('\n')
        return { instruction: 'Complete the function.', input: signature, output: `${body}\n${check}` }
      }),
      null,
      2,
    ),
  )
  const sharegpt = join(dir, 'chat.jsonl')
  await writeFile(
    sharegpt,
    `${corpusA(40, 7)
      .map((text) =>
        JSON.stringify({
          conversations: [
            { from: 'human', value: 'Tell me about an animal.' },
            { from: 'gpt', value: text },
          ],
        }),
      )
      .join('\n')}\n`,
  )
  return { pt, alpaca, sharegpt }
}
