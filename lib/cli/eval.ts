import { resolve } from 'node:path'
import { parseArgs } from 'node:util'
import { modelTokenizer } from '../generate/generate.js'
import { type ModelEvaluation, predict, prepareEvalData, sequenceLoss } from '../generate/evaluate.js'
import { LlamaproError, UsageError } from '../errors.js'
import { LlamaModel } from '../model/llama-model.js'
import { interruptSignal, parseInteger, positionals } from './args.js'
import { GENERATION_FLAGS, GENERATION_FLAGS_HELP, generateOptionsFrom, loadOptionsFrom } from './generation-flags.js'

export const EVAL_HELP = `llamapro eval <model_dir> --dataset NAMES [--compare <other_model_dir>] [--predict out.jsonl] [options]

Held-out loss and perplexity of a model (and of --compare, on exactly the same tokens) on a dataset prepared as
training prepares it: the same files, dataset_info.json, chat template and cutoff_len. Two models answer the
LLaMA-Pro question "did it learn the new domain, and does it keep the old one?" on any data.
--predict writes each sft example's generated answer as LLaMA-Factory's generated_predictions.jsonl does
(one JSON object per line: prompt, predict, label).

  --dataset NAMES            comma-separated dataset names or files (as the YAML key dataset)
  --dataset-dir DIR          where dataset_info.json and relative names live (default: data)
  --stage sft|pt             conversations (loss on the answers) or plain text (default sft)
  --cutoff-len N             longest sequence in tokens (default 2048, or the model's context if smaller)
  --max-samples N            use the first N examples of each dataset
  --batch-size N             sequences per forward pass (default 4)
  --compare DIR              a second model (same tokenizer) scored on the same tokens
  --predict FILE             also generate an answer per example into FILE (JSON lines), with the first model
  --json                     print the results as JSON
Here --template defaults to default, as train's template key does, so the tokens scored are the tokens trained.
${GENERATION_FLAGS_HELP}`

export async function runEval(argv: string[]): Promise<number> {
  const { values, positionals: args } = parseArgs({
    args: argv,
    allowPositionals: true,
    strict: true,
    options: {
      ...GENERATION_FLAGS,
      dataset: { type: 'string' },
      'dataset-dir': { type: 'string' },
      stage: { type: 'string' },
      'cutoff-len': { type: 'string' },
      'max-samples': { type: 'string' },
      'batch-size': { type: 'string' },
      compare: { type: 'string' },
      predict: { type: 'string' },
      json: { type: 'boolean', default: false },
    },
  })
  const [modelDir] = positionals(args, ['model_dir'])
  if (!values.dataset) throw new UsageError('--dataset is required (dataset names or files, comma-separated)')
  const stage = values.stage ?? 'sft'
  if (stage !== 'sft' && stage !== 'pt') throw new UsageError(`--stage must be sft or pt, got ${JSON.stringify(stage)}`)
  if (values.predict && stage !== 'sft')
    throw new UsageError('--predict needs --stage sft (conversations with an answer to predict)')
  const batchSize = parseInteger(values['batch-size'], '--batch-size', { min: 1 }) ?? 4
  const maxSamples = parseInteger(values['max-samples'], '--max-samples', { min: 1 })
  const cutoffFlag = parseInteger(values['cutoff-len'], '--cutoff-len', { min: 2 })
  const generateOptions = generateOptionsFrom(values)
  const loadOptions = loadOptionsFrom(values)
  const warn = (message: string) => process.stderr.write(`llamapro eval: warning: ${message}\n`)
  const interrupt = interruptSignal()
  const models: LlamaModel[] = []
  try {
    const dirs = [modelDir!, ...(values.compare ? [values.compare] : [])]
    // --adapter applies to <model_dir> only, so --compare can score the same base without it.
    for (const [i, dir] of dirs.entries())
      models.push(await LlamaModel.load(dir, i === 0 ? loadOptions : { ...loadOptions, adapter: undefined }))
    const tokenizer = await modelTokenizer(models[0]!)
    if (!tokenizer)
      throw new LlamaproError(
        'LLAMAPRO_TOKENIZER',
        `${modelDir} has no tokenizer.json: eval tokenizes the data with the model's tokenizer`,
      )
    const context = Math.min(...models.map((m) => m.config.maxPositionEmbeddings))
    const cutoffLen = cutoffFlag ?? Math.min(2048, context)
    const template = generateOptions.template ?? 'default'
    const data = await prepareEvalData(tokenizer, {
      dataset: values.dataset
        .split(',')
        .map((s) => s.trim())
        .filter(Boolean),
      datasetDir: values['dataset-dir'] ?? 'data',
      baseDir: process.cwd(),
      stage,
      template,
      cutoffLen,
      maxSamples,
      warn,
    })
    if (data.dropped > 0)
      warn(`${data.dropped} example(s) had no answer tokens within cutoff_len ${cutoffLen} and were skipped`)
    const results: ModelEvaluation[] = []
    for (const model of models)
      results.push(await sequenceLoss(model, data.sequences, tokenizer.padId, batchSize, interrupt.signal))
    let predictions: number | undefined
    if (values.predict) {
      const file = resolve(values.predict)
      const written = await predict(models[0]!, data.examples, tokenizer, {
        template,
        file,
        signal: interrupt.signal,
        generate: { ...generateOptions, warn },
        onPrediction: (_, i) => {
          if (!values.json) process.stderr.write(`\rpredicting ${i + 1}/${data.examples.length}`)
        },
      })
      if (!values.json) process.stderr.write('\n')
      predictions = written.length
    }
    const rows = dirs.map((dir, i) => ({ model: dir, ...results[i]! }))
    if (values.json) {
      console.log(
        JSON.stringify(
          {
            stage,
            examples: data.examples.length,
            dropped: data.dropped,
            cutoffLen,
            models: rows,
            ...(values.predict ? { predict: resolve(values.predict), predictions } : {}),
          },
          null,
          2,
        ),
      )
    } else {
      console.log(
        `${data.sequences.length} sequences from ${data.examples.length} examples (${stage}, cutoff_len ${cutoffLen})`,
      )
      const width = Math.max(5, ...rows.map((r) => r.model.length))
      console.log(
        `${'model'.padEnd(width)}  ${'loss'.padStart(8)}  ${'perplexity'.padStart(11)}  ${'tokens'.padStart(8)}`,
      )
      for (const r of rows) {
        console.log(
          `${r.model.padEnd(width)}  ${r.loss.toFixed(4).padStart(8)}  ${r.perplexity.toFixed(3).padStart(11)}  ` +
            `${String(r.tokens).padStart(8)}`,
        )
      }
      if (rows.length === 2) {
        const delta = rows[1]!.loss - rows[0]!.loss
        console.log(
          `difference (compare - model): loss ${delta >= 0 ? '+' : ''}${delta.toFixed(4)}, perplexity ` +
            `×${(rows[1]!.perplexity / rows[0]!.perplexity).toFixed(3)}`,
        )
      }
      if (values.predict) console.log(`wrote ${predictions} predictions to ${resolve(values.predict)}`)
    }
    return 0
  } finally {
    interrupt.dispose()
    for (const model of models) model.dispose()
  }
}
