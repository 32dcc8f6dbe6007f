/**
 * Held-out loss and perplexity of one or more models on the same data, prepared exactly as training prepares
 * it (lib/data: dataset files, template, cutoff_len), and batched as training's evaluation batches it. With two
 * models this is the "learns B, keeps A" check: the expanded, fine-tuned model against its base, on any data.
 * `predictions` generates each sft example's answer from its prompt, as LLaMA-Factory's do_predict does.
 */
import { rename, rm, writeFile } from 'node:fs/promises'
import { collate } from '../data/batches.js'
import { type Example, loadExamples } from '../data/dataset.js'
import { type Sequence, preprocess } from '../data/preprocess.js'
import { chatTemplate, pretrainTokenizer } from '../data/template.js'
import type { TextTokenizer } from '../data/tokenizer.js'
import { LlamaproError } from '../errors.js'
import type { LlamaModel } from '../model/llama-model.js'
import { type GenerateOptions, generate } from './generate.js'

export interface EvaluateOptions {
  /** Dataset names or files, as the `dataset` key of a training YAML. */
  dataset: readonly string[]
  datasetDir?: string
  /** Relative dataset files resolve against this folder (default: the working directory). */
  baseDir?: string
  stage?: 'pt' | 'sft'
  /** Chat template for sft data (default: 'default', as training's default). */
  template?: string
  cutoffLen?: number
  batchSize?: number
  maxSamples?: number
  signal?: AbortSignal
  warn?: (message: string) => void
}

export interface ModelEvaluation {
  /** Mean cross-entropy per target token. */
  loss: number
  perplexity: number
  /** Target tokens the loss averages over. */
  tokens: number
  sequences: number
}

export interface EvaluateResult {
  models: ModelEvaluation[]
  examples: number
  dropped: number
}

export interface PreparedData {
  examples: Example[]
  sequences: Sequence[]
  dropped: number
}

export async function prepareEvalData(tokenizer: TextTokenizer, o: EvaluateOptions): Promise<PreparedData> {
  const stage = o.stage ?? 'sft'
  const cutoffLen = o.cutoffLen ?? 2048
  if (!Number.isInteger(cutoffLen) || cutoffLen < 2)
    throw new LlamaproError('LLAMAPRO_ARG', `cutoffLen must be an integer >= 2, got ${cutoffLen}`)
  const examples = await loadExamples({
    names: o.dataset,
    stage,
    datasetDir: o.datasetDir ?? 'data',
    baseDir: o.baseDir ?? process.cwd(),
    maxSamples: o.maxSamples ?? null,
  })
  // The same template (and its EOS, with replace_eos) as training, so the tokens scored are the tokens trained.
  const name = o.template ?? 'default'
  const template = stage === 'sft' ? chatTemplate(name, tokenizer, o.warn ?? (() => {})) : undefined
  const dataTokenizer = template?.tokenizer ?? pretrainTokenizer(name, tokenizer)
  // No packing: each example is scored on its own, as training's eval of unpacked sft data.
  const { sequences, dropped } = preprocess(
    examples,
    stage,
    dataTokenizer,
    template?.renderConversation,
    cutoffLen,
    false,
    { efficientEos: template?.efficientEos },
  )
  if (sequences.length === 0)
    throw new LlamaproError(
      'LLAMAPRO_DATASET',
      `evaluation: the data gave no sequence with a target token within cutoff_len ${cutoffLen}`,
    )
  return { examples, sequences, dropped }
}

/** Loss over the sequences, weighted by target tokens per batch (as lib/train's evaluation). */
export async function sequenceLoss(
  model: LlamaModel,
  sequences: readonly Sequence[],
  padId: number,
  batchSize = 4,
  signal?: AbortSignal,
): Promise<ModelEvaluation> {
  const vocab = model.config.vocabSize
  let weighted = 0
  let tokens = 0
  for (let i = 0; i < sequences.length; i += batchSize) {
    signal?.throwIfAborted()
    const batch = collate(sequences.slice(i, i + batchSize), padId)
    const bad = batch.ids.find((id) => id >= vocab)
    if (bad !== undefined) {
      throw new LlamaproError(
        'LLAMAPRO_DATASET',
        `token id ${bad} is beyond this model's vocab_size ${vocab}: the models must share a tokenizer`,
      )
    }
    const result = await model.batchLoss(batch)
    weighted += result.loss * result.tokens
    tokens += result.tokens
  }
  const loss = tokens > 0 ? weighted / tokens : 0
  return { loss, perplexity: Math.exp(loss), tokens, sequences: sequences.length }
}

/** Loss and perplexity of each model on the same prepared data (tokenized with `tokenizer`). */
export async function evaluateModels(
  models: readonly LlamaModel[],
  tokenizer: TextTokenizer,
  o: EvaluateOptions,
): Promise<EvaluateResult> {
  const data = await prepareEvalData(tokenizer, o)
  const out: ModelEvaluation[] = []
  for (const model of models)
    out.push(await sequenceLoss(model, data.sequences, tokenizer.padId, o.batchSize ?? 4, o.signal))
  return { models: out, examples: data.examples.length, dropped: data.dropped }
}

export interface Prediction {
  prompt: string
  predict: string
  label: string
}

/**
 * For each sft example: the conversation up to its last assistant turn is the prompt, that turn the label, and
 * the model's reply the prediction. Written as JSON lines to `file` (atomically) when given.
 */
export async function predict(
  model: LlamaModel,
  examples: readonly Example[],
  tokenizer: TextTokenizer,
  o: {
    template?: string
    file?: string
    generate?: GenerateOptions
    onPrediction?: (p: Prediction, index: number) => void
    signal?: AbortSignal
  },
): Promise<Prediction[]> {
  const predictions: Prediction[] = []
  for (const example of examples) {
    o.signal?.throwIfAborted()
    if (example.kind !== 'conversation') {
      throw new LlamaproError(
        'LLAMAPRO_DATASET',
        'predict needs sft (conversation) data: a pt text has no prompt/answer split',
      )
    }
    const messages = example.messages.slice(0, -1)
    const label = example.messages[example.messages.length - 1]!.content
    const result = await generate(model, messages, {
      template: o.template ?? 'default',
      tokenizer,
      signal: o.signal,
      ...o.generate,
    })
    const p = { prompt: tokenizer.decode(result.promptTokenIds), predict: result.text, label }
    predictions.push(p)
    o.onPrediction?.(p, predictions.length - 1)
  }
  if (o.file) {
    const tmp = `${o.file}.tmp-${process.pid}`
    try {
      await writeFile(tmp, predictions.map((p) => JSON.stringify(p)).join('\n') + (predictions.length ? '\n' : ''))
      await rename(tmp, o.file)
    } catch (error) {
      await rm(tmp, { force: true })
      throw error
    }
  }
  return predictions
}
