/**
 * Dumps the token ids and labels llamapro makes from a YAML's data (the same steps train() takes), as JSON.
 *
 * usage (from the working folder): npx tsx <repo>/bench/llamafactory-parity/tokens-llamapro.ts <case.yaml> <out.json>
 */
import { writeFileSync } from 'node:fs'
import { loadExamples } from '../../lib/data/dataset.js'
import { preprocess } from '../../lib/data/preprocess.js'
import { conversationRenderer } from '../../lib/data/template.js'
import { loadTokenizer } from '../../lib/data/tokenizer.js'
import { loadTrainConfig } from '../../lib/train/config.js'

const [yamlPath, outPath] = process.argv.slice(2)
const config = await loadTrainConfig(yamlPath!, { output_dir: 'unused' })
const tokenizer = await loadTokenizer(config.modelNameOrPath)
const examples = await loadExamples({
  names: config.dataset,
  stage: config.stage,
  datasetDir: config.datasetDir,
  baseDir: config.baseDir,
  maxSamples: config.maxSamples,
})
const render =
  config.stage === 'sft'
    ? conversationRenderer(config.template, tokenizer, (message) => console.error(`warning: ${message}`))
    : undefined
const { sequences } = preprocess(examples, config.stage, tokenizer, render, config.cutoffLen, config.packing)
writeFileSync(outPath!, JSON.stringify(sequences.map((s) => ({ ids: [...s.ids], labels: [...s.labels] }))))
