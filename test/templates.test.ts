/**
 * LLaMA-Factory's named templates against LLaMA-Factory 0.9.5 itself: test/reference/llamafactory_templates.py runs
 * its template.py and supervised/pretrain processors (no torch needed) on the same tokenizer.json, and every
 * template's token ids, labels, generation prompt, EOS, stop tokens and pt ids must match ours exactly.
 */
import t from 'tap'
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { trainByteLevelBpe } from '../lib/data/bpe-trainer.js'
import type { Message } from '../lib/data/dataset.js'
import { IGNORE_INDEX, encodeConversation, encodePretrain } from '../lib/data/preprocess.js'
import {
  TEMPLATE_NAMES,
  chatTemplate,
  conversationRenderer,
  encodeParts,
  pretrainTokenizer,
  segmentText,
} from '../lib/data/template.js'
import { type TextTokenizer, loadTokenizer } from '../lib/data/tokenizer.js'
import { corpusA } from '../lib/demo/corpora.js'
import { runPythonJson } from './helpers/python.js'

const SPECIAL_TOKENS = [
  '<s>',
  '</s>',
  '<|endoftext|>',
  '<|im_start|>',
  '<|im_end|>',
  '<|im_sep|>',
  '<|begin_of_text|>',
  '<|end_of_text|>',
  '<|start_header_id|>',
  '<|end_header_id|>',
  '<|eot_id|>',
  '<|eom_id|>',
  '<|header_start|>',
  '<|header_end|>',
  '<|eot|>',
  '<|eom|>',
  '<bos>',
  '<eos>',
  '<pad>',
  '<start_of_turn>',
  '<end_of_turn>',
  '<|user|>',
  '<|assistant|>',
  '<|system|>',
  '<|end|>',
  '<|EOT|>',
  '<｜User｜>',
  '<｜Assistant｜>',
  '<｜begin▁of▁sentence｜>',
  '<｜end▁of▁sentence｜>',
]

/** Each family's special tokens, as its tokenizer_config.json names them. */
const FAMILIES: Record<
  string,
  { bos_token: string | null; eos_token: string; pad_token?: string; add_bos_token?: boolean }
> = {
  llama: { bos_token: '<s>', eos_token: '</s>', add_bos_token: true },
  qwen: { bos_token: null, eos_token: '<|endoftext|>', pad_token: '<|endoftext|>' },
  smollm: { bos_token: '<|im_start|>', eos_token: '<|im_end|>' },
  llama3: { bos_token: '<|begin_of_text|>', eos_token: '<|end_of_text|>' },
  gemma: { bos_token: '<bos>', eos_token: '<eos>', pad_token: '<pad>', add_bos_token: true },
  phi: { bos_token: '<s>', eos_token: '<|endoftext|>' },
  deepseek: { bos_token: '<｜begin▁of▁sentence｜>', eos_token: '<｜end▁of▁sentence｜>', add_bos_token: true },
}

const FAMILY_OF: Record<string, string> = {
  chatml: 'qwen',
  chatml_de: 'qwen',
  cpm4: 'qwen',
  qwen: 'qwen',
  qwen3: 'qwen',
  qwen3_nothink: 'qwen',
  yi: 'qwen',
  phi4: 'qwen',
  smollm: 'smollm',
  smollm2: 'smollm',
  llama3: 'llama3',
  llama4: 'llama3',
  gemma: 'gemma',
  gemma2: 'gemma',
  gemma3: 'gemma',
  phi: 'phi',
  deepseek: 'deepseek',
  deepseek3: 'deepseek',
  deepseekcoder: 'deepseek',
}

const WITH_SYSTEM: Message[] = [
  { role: 'system', content: 'Be brief.' },
  { role: 'user', content: 'Name an animal.' },
  { role: 'assistant', content: 'The fox.' },
  { role: 'user', content: 'Another?' },
  { role: 'assistant', content: 'The owl.' },
]
const NO_SYSTEM = WITH_SYSTEM.slice(1)
/** `$&` would be the matched text in a String.replace replacement string; LLaMA-Factory inserts it literally. */
const ODD_TEXT: Message[] = [
  { role: 'user', content: "Say $& and $' and {{content}} and {{idx}}, then <|im_end|> in text." },
  { role: 'assistant', content: ' spaced\n\nout ' },
]
const WITH_THOUGHT: Message[] = [
  { role: 'user', content: 'Two plus two?' },
  { role: 'assistant', content: '<think>\nAdd them.\n</think>\n\nFour.' },
  { role: 'user', content: 'And three?' },
  { role: 'assistant', content: 'Five.' },
]

interface Case {
  template: string
  messages: Message[]
  cutoff_len: number
  default_system?: string
  enable_thinking?: boolean
  pt_texts?: string[]
}
interface Reference {
  input_ids: number[]
  labels: number[]
  prompt_ids: number[]
  eos_id: number
  stop_ids: number[]
  pt_ids: number[][]
  new_tokens: number
}

function writeTokenizerDir(dir: string, tokenizerJson: unknown, family: string): string {
  mkdirSync(dir, { recursive: true })
  writeFileSync(join(dir, 'tokenizer.json'), JSON.stringify(tokenizerJson))
  writeFileSync(
    join(dir, 'tokenizer_config.json'),
    JSON.stringify({ tokenizer_class: 'PreTrainedTokenizerFast', ...FAMILIES[family] }),
  )
  return dir
}

async function ours(tokenizer: TextTokenizer, c: Case) {
  const template = chatTemplate(c.template, tokenizer, () => {}, {
    defaultSystem: c.default_system,
    enableThinking: c.enable_thinking,
  })
  const sequence = encodeConversation(template.renderConversation(c.messages), template.tokenizer, c.cutoff_len, {
    efficientEos: template.efficientEos,
  })!
  const history = c.messages.slice(0, -1)
  const stopIds = [
    ...new Set(template.stopWords.map((w) => template.tokenizer.tokenId!(w)).filter((id) => id !== undefined)),
  ].sort((a, b) => a - b)
  const pt = pretrainTokenizer(c.template, tokenizer)
  return {
    input_ids: sequence.ids,
    labels: sequence.labels,
    prompt_ids: encodeParts(template.renderPrompt(history), template.tokenizer),
    eos_id: template.tokenizer.eosId,
    stop_ids: stopIds,
    pt_ids: encodePretrain(c.pt_texts ?? [], pt, c.cutoff_len, false).map((s) => s.ids),
  }
}

t.test("every named template renders conversations token for token as LLaMA-Factory 0.9.5's template.py", async (t) => {
  const root = t.testdir()
  const { tokenizerJson } = trainByteLevelBpe(
    [...corpusA(60), 'Name an animal. The fox. Another? The owl. Be brief.'],
    { vocabSize: 400, specialTokens: SPECIAL_TOKENS },
  )
  const names = TEMPLATE_NAMES.filter((n) => n !== 'model')
  t.ok(names.length >= 30, `${names.length} named templates`)
  const dirs = Object.fromEntries(
    Object.keys(FAMILIES).map((family) => [family, writeTokenizerDir(join(root, family), tokenizerJson, family)]),
  )
  const cases: (Case & { family: string })[] = []
  for (const name of names) {
    const family = FAMILY_OF[name] ?? 'llama'
    cases.push({
      template: name,
      family,
      messages: WITH_SYSTEM,
      cutoff_len: 1024,
      pt_texts: ['The fox ran.', 'An owl.'],
    })
    // the template's default system prompt
    cases.push({ template: name, family, messages: NO_SYSTEM, cutoff_len: 1024 })
    cases.push({ template: name, family, messages: WITH_SYSTEM, cutoff_len: 24 }) // per-turn budgets (infer_seqlen)
    cases.push({ template: name, family, messages: ODD_TEXT, cutoff_len: 1024 })
  }
  for (const enable_thinking of [true, false]) {
    for (const messages of [WITH_THOUGHT, NO_SYSTEM])
      cases.push({ template: 'qwen3', family: 'qwen', messages, cutoff_len: 1024, enable_thinking })
  }
  cases.push({
    template: 'llama3',
    family: 'llama3',
    messages: NO_SYSTEM,
    cutoff_len: 1024,
    default_system: 'Answer in French.',
  })
  cases.push({ template: 'gemma2', family: 'gemma', messages: WITH_SYSTEM, cutoff_len: 13 })

  const byFamily = new Map<string, number[]>()
  cases.forEach((c, i) => byFamily.set(c.family, [...(byFamily.get(c.family) ?? []), i]))
  const reference: Reference[] = new Array(cases.length)
  for (const [family, indices] of byFamily) {
    const results = await runPythonJson<(Reference | { error: string })[]>(
      ['test/reference/llamafactory_templates.py'],
      JSON.stringify({ tokenizer_dir: dirs[family], cases: indices.map((i) => cases[i]) }),
    )
    results.forEach((r, k) => {
      if ('error' in r) throw new Error(`LLaMA-Factory failed on ${JSON.stringify(cases[indices[k]!])}: ${r.error}`)
      reference[indices[k]!] = r
    })
  }
  const tokenizers = Object.fromEntries(
    await Promise.all(Object.entries(dirs).map(async ([f, d]) => [f, await loadTokenizer(d)] as const)),
  )
  for (const [i, c] of cases.entries()) {
    const expected = reference[i]!
    t.equal(expected.new_tokens, 0, `${c.template}: LLaMA-Factory adds no token to this tokenizer`)
    const got = await ours(tokenizers[c.family]!, c)
    const what = `${c.template} (${c.messages === WITH_SYSTEM ? 'system' : c.messages === NO_SYSTEM ? 'default system' : 'other'}, cutoff ${c.cutoff_len}${c.enable_thinking === false ? ', no thinking' : ''})`
    t.same(got.input_ids, expected.input_ids, `${what}: input ids`)
    t.same(got.labels, expected.labels, `${what}: labels`)
    t.same(got.prompt_ids, expected.prompt_ids, `${what}: generation prompt`)
    t.equal(got.eos_id, expected.eos_id, `${what}: EOS`)
    t.same(got.stop_ids, expected.stop_ids, `${what}: stop tokens`)
    if (c.pt_texts) t.same(got.pt_ids, expected.pt_ids, `${what}: pt ids`)
  }
})

t.test(
  'ChatML family: the "\\n" after <|im_end|> is learned, replace_eos makes <|im_end|> the EOS, default_system is exact',
  async (t) => {
    const dir = t.testdir()
    const { tokenizerJson } = trainByteLevelBpe(corpusA(40), { vocabSize: 300, specialTokens: SPECIAL_TOKENS })
    const tokenizer = await loadTokenizer(writeTokenizerDir(dir, tokenizerJson, 'qwen'))
    const qwen = chatTemplate('qwen', tokenizer, () => {})
    const segments = qwen.renderConversation(NO_SYSTEM)
    t.equal(
      segmentText(segments[0]!, '<eos>'),
      '<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful ' +
        'assistant.<|im_end|>\n<|im_start|>user\nName an animal.<|im_end|>\n<|im_start|>assistant\n',
    )
    const sequence = encodeConversation(segments, qwen.tokenizer, 1000)!
    const learned = sequence.ids.filter((_, i) => sequence.labels[i] !== IGNORE_INDEX)
    t.equal(
      tokenizer.decode(learned),
      'The fox.<|im_end|>\nThe owl.<|im_end|>\n',
      'each response ends with <|im_end|> and a learned newline',
    )
    t.equal(learned.at(-1), tokenizer.encode('\n')[0])
    t.equal(qwen.tokenizer.eosId, tokenizer.tokenId!('<|im_end|>'), 'replace_eos: EOS is <|im_end|>')
    t.same(
      tokenizer.encode('<|im_start|>user\n<|im_end|>').filter((id) => id >= SPECIAL_TOKENS.length),
      tokenizer.encode('user\n'),
      'special tokens in slot text are single ids',
    )
    t.same(tokenizer.encode('<|im_start|>'), [tokenizer.tokenId!('<|im_start|>')])
    t.same(qwen.stopWords, ['<|im_end|>'])
    t.equal(pretrainTokenizer('qwen', tokenizer).eosId, qwen.tokenizer.eosId, 'pt texts end with the replaced EOS too')

    const smol = chatTemplate('smollm2', tokenizer, () => {})
    t.equal(
      segmentText(smol.renderConversation(NO_SYSTEM)[0]!, '<eos>').split('\n')[1],
      'You are a helpful AI assistant named SmolLM, trained by Hugging Face.<|im_end|>',
    )
    t.equal(smol.tokenizer.eosId, tokenizer.eosId, 'smollm2 keeps the tokenizer EOS (no replace_eos)')
    t.same(
      partsOf(
        chatTemplate('smollm2', tokenizer, () => {}, { defaultSystem: 'Be kind.' }).renderPrompt(NO_SYSTEM.slice(0, 1)),
      ),
      '<|im_start|>system\nBe kind.<|im_end|>\n<|im_start|>user\nName an animal.<|im_end|>\n<|im_start|>assistant\n',
      'default_system replaces the default; the prompt ends where the answer starts',
    )
  },
)

const partsOf = (parts: readonly unknown[]) => parts.map((p) => (typeof p === 'string' ? p : '<special>')).join('')

t.test(
  'stop words the tokenizer has only as plain vocabulary become one token; missing ones are refused where slots need ' +
    'them',
  async (t) => {
    const root = t.testdir()
    const { tokenizerJson } = trainByteLevelBpe(corpusA(40), { vocabSize: 300, specialTokens: SPECIAL_TOKENS })
    const json = tokenizerJson as { added_tokens: { content: string }[]; model: { vocab: Record<string, number> } }
    // <|im_end|> stays in the vocabulary but is no added token: text holding it splits into pieces until the template
    // registers it (LLaMA-Factory's add_special_tokens).
    const plain = { ...json, added_tokens: json.added_tokens.filter((a) => a.content !== '<|im_end|>') }
    const dir = writeTokenizerDir(join(root, 'plain'), plain, 'qwen')
    const tokenizer = await loadTokenizer(dir)
    t.ok(tokenizer.encode('<|im_end|>').length > 1)
    const cases = [
      { template: 'smollm', messages: WITH_SYSTEM, cutoff_len: 1024 },
      { template: 'qwen', messages: ODD_TEXT, cutoff_len: 1024 },
    ]
    const expected = await runPythonJson<Reference[]>(
      ['test/reference/llamafactory_templates.py'],
      JSON.stringify({ tokenizer_dir: dir, cases }),
    )
    for (const [i, c] of cases.entries()) {
      const got = await ours(tokenizer, c)
      t.same(
        [got.input_ids, got.labels, got.eos_id],
        [expected[i]!.input_ids, expected[i]!.labels, expected[i]!.eos_id],
        c.template,
      )
    }

    // No <|eot_id|> at all: LLaMA-Factory would add a token (and need resize_vocab); llamapro refuses.
    const without = { ...json, added_tokens: json.added_tokens.filter((a) => a.content !== '<|eot_id|>') }
    without.model = {
      ...json.model,
      vocab: Object.fromEntries(Object.entries(json.model.vocab).filter(([k]) => k !== '<|eot_id|>')),
    }
    const missing = await loadTokenizer(writeTokenizerDir(join(root, 'missing'), without, 'llama3'))
    t.throws(() => chatTemplate('llama3', missing, () => {}), {
      code: 'LLAMAPRO_TEMPLATE',
      message: /template "llama3" needs the token "<\|eot_id\|>".*resize_vocab/,
    })
    t.throws(() => pretrainTokenizer('llama3', missing), { code: 'LLAMAPRO_TEMPLATE' })
  },
)

t.test(
  'template names: an unknown one is an error listing the known ones; model uses the chat template file and names it',
  async (t) => {
    const root = t.testdir()
    const { tokenizerJson } = trainByteLevelBpe(corpusA(40), { vocabSize: 300, specialTokens: SPECIAL_TOKENS })
    const dir = writeTokenizerDir(join(root, 'model'), tokenizerJson, 'qwen')
    const tokenizer = await loadTokenizer(dir)
    for (const name of ['llama-3', 'Qwen', 'custom', '__proto__', 'toString']) {
      t.throws(() => chatTemplate(name, tokenizer, () => {}), {
        code: 'LLAMAPRO_TEMPLATE',
        message: new RegExp(`unknown template "${name}" \\(known: default, empty, alpaca, .*qwen3_nothink.*, model\\)`),
      })
      t.throws(() => pretrainTokenizer(name, tokenizer), { code: 'LLAMAPRO_TEMPLATE' })
    }
    t.throws(() => chatTemplate('model', tokenizer, () => {}), {
      message: /template "model".*has none \(no chat_template.jinja/,
    })
    for (const name of [
      'alpaca',
      'vicuna',
      'chatml',
      'llama2',
      'llama3',
      'mistral',
      'qwen',
      'qwen3',
      'qwen3_nothink',
      'gemma',
      'phi',
      'deepseek',
      'deepseek3',
      'yi',
      'smollm',
      'smollm2',
      'default',
      'empty',
      'model',
    ]) {
      t.ok(TEMPLATE_NAMES.includes(name), name)
    }

    // transformers >= 4.5x writes chat_template.jinja beside tokenizer_config.json, and prefers it.
    const jinja =
      "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}{% endfor " +
      "%}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
    writeFileSync(join(dir, 'chat_template.jinja'), jinja)
    const config = JSON.parse(readFileSync(join(dir, 'tokenizer_config.json'), 'utf8'))
    writeFileSync(
      join(dir, 'tokenizer_config.json'),
      JSON.stringify({ ...config, chat_template: 'IGNORED {{ messages }}' }),
    )
    const warnings: string[] = []
    const model = chatTemplate('model', await loadTokenizer(dir), (w) => warnings.push(w))
    t.same(warnings, [`template "model": using the model's own chat template from ${join(dir, 'chat_template.jinja')}`])
    t.same(
      model.renderConversation(NO_SYSTEM).map((s) => segmentText(s, '')),
      [
        '<|im_start|>user\nName an animal.<|im_end|>\n<|im_start|>assistant\n',
        'The fox.<|im_end|>\n',
        '<|im_start|>user\nAnother?<|im_end|>\n<|im_start|>assistant\n',
        'The owl.<|im_end|>\n',
      ],
    )
    t.same(model.renderPrompt(NO_SYSTEM.slice(0, 1)), [
      '<|im_start|>user\nName an animal.<|im_end|>\n<|im_start|>assistant\n',
    ])
    t.same(conversationRenderer('model', await loadTokenizer(dir), () => {})(NO_SYSTEM).length, 4)

    const { unlinkSync } = await import('node:fs')
    unlinkSync(join(dir, 'chat_template.jinja'))
    writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify({ ...config, chat_template: jinja }))
    warnings.length = 0
    chatTemplate('model', await loadTokenizer(dir), (w) => warnings.push(w))
    t.match(warnings[0], `from ${join(dir, 'tokenizer_config.json')} (chat_template)`)
    t.throws(() => chatTemplate('qwen', tokenizer, () => {}).renderPrompt(NO_SYSTEM.slice(0, 2)), {
      message: /end with a user turn/,
    })
  },
)

t.test(
  'train(): a named template trains (sft and pt); an unknown or unfitting one stops the run before the model loads',
  async (t) => {
    const { writeDatasets, writeTrainableModel } = await import('./helpers/trainable-model.js')
    const { parseTrainConfig } = await import('../lib/train/config.js')
    const { train } = await import('../lib/train/trainer.js')
    const dir = t.testdir()
    await writeTrainableModel(join(dir, 'model'), { seed: 5 })
    const data = await writeDatasets(dir)
    const run = (raw: Record<string, unknown>) =>
      train(
        parseTrainConfig(
          {
            model_name_or_path: join(dir, 'model'),
            finetuning_type: 'freeze',
            freeze_trainable_layers: 1,
            cutoff_len: 48,
            per_device_train_batch_size: 4,
            max_steps: 2,
            logging_steps: 1,
            save_steps: 1000,
            overwrite_output_dir: true,
            output_dir: join(dir, 'out'),
            ...raw,
          },
          'test config',
          dir,
        ),
      )
    const losses: number[] = []
    const result = await train(
      parseTrainConfig(
        {
          model_name_or_path: join(dir, 'model'),
          stage: 'sft',
          template: 'qwen',
          default_system: 'Be brief.',
          dataset: data.sharegpt,
          freeze_trainable_layers: 1,
          cutoff_len: 48,
          per_device_train_batch_size: 4,
          max_steps: 2,
          logging_steps: 1,
          output_dir: join(dir, 'out'),
        },
        'test config',
        dir,
      ),
      { onEvent: (e) => e.type === 'step' && losses.push(e.loss) },
    )
    t.equal(result.globalStep, 2)
    t.ok(losses.length === 2 && losses.every(Number.isFinite), `finite losses ${losses}`)
    t.equal((await run({ stage: 'pt', template: 'chatml', dataset: data.pt })).globalStep, 2)
    await t.rejects(run({ stage: 'sft', template: 'nope', dataset: data.sharegpt }), {
      code: 'LLAMAPRO_TEMPLATE',
      message: /unknown template "nope" \(known: default, empty/,
    })
    await t.rejects(run({ stage: 'pt', template: 'nope', dataset: data.pt }), { code: 'LLAMAPRO_TEMPLATE' })
    await t.rejects(run({ stage: 'sft', template: 'llama3', dataset: data.sharegpt }), {
      code: 'LLAMAPRO_TEMPLATE',
      message: /needs the token "<\|eot_id\|>"/,
    })
  },
)
