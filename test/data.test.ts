import t from 'tap'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { CHATML_TEMPLATE, writeTrainedTokenizer } from '../lib/data/bpe-trainer.js'
import { BatchSchedule, collate, shuffledIndices, splitEval } from '../lib/data/batches.js'
import { loadExamples, readRecords } from '../lib/data/dataset.js'
import {
  IGNORE_INDEX,
  encodeConversation,
  encodePretrain,
  inferSeqlen,
  pack,
  preprocess,
} from '../lib/data/preprocess.js'
import { conversationRenderer, segmentText } from '../lib/data/template.js'
import { loadTokenizer } from '../lib/data/tokenizer.js'
import { corpusA, corpusB } from '../lib/demo/corpora.js'
import { learningRateAt, warmupStepsFor } from '../lib/train/schedule.js'
import { pythonSnippet } from './helpers/python.js'

t.test('a trained byte-level BPE tokenizer.json encodes the same in Python tokenizers and in llamapro', async (t) => {
  const dir = t.testdir()
  const vocab = await writeTrainedTokenizer(dir, [...corpusA(200), ...corpusB(200)], 400)
  t.equal(vocab, 400)
  const tokenizer = await loadTokenizer(dir)
  const texts = [
    ...corpusA(5, 99),
    ...corpusB(5, 98),
    'Unseen wörds, ünïcode ✓ and   spaces\ttabs\n',
    '<|im_start|>user\nhi<|im_end|>\n',
  ]
  const ours = texts.map((text) => tokenizer.encode(text))
  const python = await pythonSnippet<number[][]>(
    'import json, sys\nfrom tokenizers import Tokenizer\nreq = json.load(sys.stdin)\ntok = ' +
      'Tokenizer.from_file(req["file"])\nprint(json.dumps([tok.encode(x, add_special_tokens=False).ids for x in ' +
      'req["texts"]]))',
    { file: join(dir, 'tokenizer.json'), texts },
  )
  t.same(ours, python)
  t.equal(tokenizer.decode(ours[10]!), texts[10], 'decoding round-trips, unicode included')
  t.same(ours[11]!.slice(0, 1), [2], '<|im_start|> is one special token')
  t.equal(tokenizer.eosId, 0)
  t.equal(tokenizer.padId, 1)
  t.equal(tokenizer.chatTemplate, CHATML_TEMPLATE)
})

/** A two-turn conversation with a system prompt, shared by the template tests. */
const TWO_TURNS = [
  { role: 'system' as const, content: 'Be brief.' },
  { role: 'user' as const, content: 'Name an animal.' },
  { role: 'assistant' as const, content: 'The fox.' },
  { role: 'user' as const, content: 'Another?' },
  { role: 'assistant' as const, content: 'The owl.' },
]

t.test(
  "sft encoding, template model: prompt tokens are -100; responses are learned and end as the model's template ends " +
    'them',
  async (t) => {
    const dir = t.testdir()
    await writeTrainedTokenizer(dir, corpusA(100), 300)
    const tokenizer = await loadTokenizer(dir)
    const warnings: string[] = []
    const chatml = conversationRenderer('model', tokenizer, (w) => warnings.push(w))
    t.same(warnings, [
      `template "model": using the model's own chat template from ${join(dir, 'tokenizer_config.json')} (chat_template)`,
    ])
    const segments = chatml(TWO_TURNS)
    t.same(
      segments.map((s) => s.train),
      [false, true, false, true],
    )
    t.equal(
      segmentText(segments[0]!, '</s>'),
      '<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nName an animal.<|im_end|>\n<|im_start|>assistant\n',
    )
    t.equal(segmentText(segments[1]!, '</s>'), 'The fox.<|im_end|>\n')
    const sequence = encodeConversation(segments, tokenizer, 1000)!
    const learned = sequence.ids.filter((_, i) => sequence.labels[i] !== IGNORE_INDEX)
    // LLaMA-Factory's chatml/qwen templates learn "{content}<|im_end|>\n" and add no EOS of their own.
    t.equal(
      tokenizer.decode(learned),
      'The fox.<|im_end|>\nThe owl.<|im_end|>\n',
      'only the responses, each with its end-of-turn token',
    )
    t.notOk(sequence.ids.includes(tokenizer.eosId), 'no EOS the template did not ask for')
    t.throws(() => conversationRenderer('model', { ...tokenizer, chatTemplate: null }, () => {}), {
      message:
        /template "model" renders the model's own chat template, and the model has none.*choose one of: default, empty, alpaca/,
    })
  },
)

t.test(
  "the default template is LLaMA-Factory's, slot for slot: EOS after the system prompt, each user turn and each " +
    'response',
  async (t) => {
    const dir = t.testdir()
    await writeTrainedTokenizer(dir, corpusA(100), 300)
    const tokenizer = await loadTokenizer(dir)
    const segments = conversationRenderer('default', tokenizer, () => {})(TWO_TURNS)
    t.same(
      segments.map((s) => [segmentText(s, '<eos>'), s.train]),
      [
        ['System: Be brief.<eos>\nHuman: Name an animal.<eos>\nAssistant:', false],
        ['The fox.<eos>\n', true],
        ['Human: Another?<eos>\nAssistant:', false],
        ['The owl.<eos>\n', true],
      ],
    )
    // Independent expectation: LLaMA-Factory tokenizes each slot on its own and inserts eos_token_id for {"eos_token"}.
    const eos = tokenizer.eosId
    const enc = (text: string) => tokenizer.encode(text)
    const expected = [
      ...enc('System: Be brief.'),
      eos,
      ...enc('\n'),
      ...enc('Human: Name an animal.'),
      eos,
      ...enc('\nAssistant:'),
      ...enc('The fox.'),
      eos,
      ...enc('\n'),
      ...enc('Human: Another?'),
      eos,
      ...enc('\nAssistant:'),
      ...enc('The owl.'),
      eos,
      ...enc('\n'),
    ]
    const sequence = encodeConversation(segments, tokenizer, 1000)!
    t.same(sequence.ids, expected)
    const learned = sequence.ids.filter((_, i) => sequence.labels[i] !== IGNORE_INDEX)
    t.same(
      learned,
      [...enc('The fox.'), eos, ...enc('\n'), ...enc('The owl.'), eos, ...enc('\n')],
      'every response ends with EOS',
    )

    const empty = conversationRenderer('empty', tokenizer, () => {})(TWO_TURNS)
    t.same(
      empty.map((s) => segmentText(s, '<eos>')),
      ['Be brief.Name an animal.', 'The fox.', 'Another?', 'The owl.'],
    )
    t.notOk(encodeConversation(empty, tokenizer, 1000)!.ids.includes(eos), 'empty adds no EOS, as in LLaMA-Factory')
  },
)

t.test(
  "cutoff_len budgets follow LLaMA-Factory's infer_seqlen; over-long prompts never eat the whole response",
  async (t) => {
    t.same(inferSeqlen(10, 10, 100), [10, 10])
    t.same(inferSeqlen(100, 10, 50), [40, 10])
    t.same(inferSeqlen(10, 100, 50), [10, 40])
    t.same(inferSeqlen(60, 40, 50), [30, 20])
    const tokenizer = { encode: (s: string) => Array.from(s, (c) => c.charCodeAt(0)), eosId: 0 }
    const seq = encodeConversation(
      [
        { parts: ['p'.repeat(30)], train: false },
        { parts: ['r'.repeat(30)], train: true },
      ],
      tokenizer,
      20,
    )!
    t.equal(seq.ids.length, 20)
    t.equal(seq.labels.filter((l) => l !== IGNORE_INDEX).length, 10)
  },
)

t.test(
  'pt: EOS after each text; packing cuts cutoff_len blocks, packing: false keeps one sequence per text; BOS where ' +
    'add_bos_token',
  async (t) => {
    const tokenizer = { encode: (s: string) => Array.from(s, () => 5), eosId: 9, bosId: 1, addBosToken: false }
    const texts = ['abc', 'defgh', 'ij']
    const { sequences } = preprocess(
      texts.map((text) => ({ kind: 'text' as const, text })),
      'pt',
      tokenizer as never,
      undefined,
      4,
      true,
    )
    t.same(
      sequences.map((s) => s.ids),
      [
        [5, 5, 5, 9],
        [5, 5, 5, 5],
        [5, 9, 5, 5],
      ],
      'the 1-token remainder is dropped',
    )
    t.same(
      encodePretrain(texts, tokenizer, 4, false).map((s) => s.ids),
      [
        [5, 5, 5, 9],
        [5, 5, 5, 5],
        [5, 5, 9],
      ],
      'one sequence per text, cut at cutoff_len',
    )
    const withBos = { ...tokenizer, addBosToken: true }
    t.same(
      encodePretrain(texts, withBos, 4, true).map((s) => s.ids),
      [
        [1, 5, 5, 9],
        [1, 5, 5, 5],
        [1, 9, 5, 5],
      ],
      "a block's first token becomes BOS",
    )
    t.same(
      encodePretrain(texts, withBos, 4, false).map((s) => s.ids),
      [
        [1, 5, 5, 5],
        [1, 5, 5, 5],
        [1, 5, 5, 9],
      ],
      'BOS starts each text',
    )
    t.same(
      encodePretrain(['ab'], withBos, 8, true).map((s) => s.ids),
      [[1, 5, 5, 9]],
      'less than one block: the whole stream, after BOS',
    )
    for (const s of encodePretrain(texts, withBos, 4, true)) t.same(s.labels, s.ids, 'pt learns every token')

    const packed = pack(
      [
        { ids: [1, 2], labels: [1, 2] },
        { ids: [3, 4, 5], labels: [3, 4, 5] },
        { ids: [6], labels: [6] },
      ],
      4,
    )
    t.same(
      packed.map((p) => p.ids),
      [
        [1, 2],
        [3, 4, 5, 6],
      ],
    )
  },
)

t.test('a document of a million tokens is split without overflowing the call stack', async (t) => {
  const million = Array.from({ length: 1_000_000 }, (_, i) => i % 50)
  const tokenizer = { encode: () => million, eosId: 60, bosId: null, addBosToken: false }
  const blocks = encodePretrain(['one huge text'], tokenizer, 4096, true)
  t.equal(blocks.length, Math.floor(1_000_001 / 4096))
  const [whole] = encodePretrain(['one huge text'], tokenizer, 2_000_000, false)
  t.equal(whole!.ids.length, 1_000_001)
  const conversation = encodeConversation(
    [
      { parts: ['prompt'], train: false },
      { parts: ['response'], train: true },
    ],
    tokenizer,
    3_000_000,
  )!
  t.equal(conversation.ids.length, 2_000_000)
  t.equal(pack([conversation, conversation], 5_000_000)[0]!.ids.length, 4_000_000)
})

t.test('batches: right padding with -100 labels; seeded order differs per epoch and is reproducible', async (t) => {
  const batch = collate(
    [
      { ids: [1, 2, 3], labels: [-100, 2, 3] },
      { ids: [4], labels: [4] },
    ],
    0,
  )
  t.same([...batch.ids], [1, 2, 3, 4, 0, 0])
  t.same([...batch.labels], [-100, 2, 3, 4, -100, -100])
  t.equal(batch.targetTokens, 2)
  t.equal(batch.tokens, 4)
  t.same(shuffledIndices(10, 5), shuffledIndices(10, 5))
  t.notSame(shuffledIndices(10, 5), shuffledIndices(10, 6))
  const schedule = new BatchSchedule(
    Array.from({ length: 10 }, (_, i) => ({ ids: [i], labels: [i] })),
    3,
    1,
    0,
  )
  t.equal(schedule.batchesPerEpoch, 4)
  const epoch0 = [0, 1, 2, 3].flatMap((b) => [...schedule.batch(0, b).ids])
  t.same(
    [...epoch0].sort((a, b) => a - b),
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
    'an epoch sees every sequence once',
  )
  const split = splitEval(
    Array.from({ length: 20 }, (_, i) => i),
    0.25,
    1,
  )
  t.equal(split.eval.length, 5)
  t.equal(split.train.length + split.eval.length, 20)
  t.same(splitEval([1, 2, 3], 2, 1).eval.length, 2, 'an integer val_size is a count')
})

t.test('learning-rate schedules match transformers (values at known steps)', async (t) => {
  const close = (a: number, b: number) => Math.abs(a - b) < 1e-12
  t.equal(learningRateAt(0, 10, 2, 'linear', 1), 0, 'warm-up starts at 0')
  t.equal(learningRateAt(1, 10, 2, 'linear', 1), 0.5)
  t.equal(learningRateAt(2, 10, 2, 'linear', 1), 1)
  t.equal(learningRateAt(6, 10, 2, 'linear', 1), 0.5)
  t.ok(close(learningRateAt(6, 10, 2, 'cosine', 1), 0.5))
  t.ok(close(learningRateAt(4, 10, 2, 'cosine', 1), 0.5 * (1 + Math.cos(Math.PI * 0.25))))
  t.equal(learningRateAt(0, 10, 0, 'linear', 2), 2, 'no warm-up: the first step has the peak rate')
  t.equal(learningRateAt(9, 10, 5, 'constant', 3), 3)
  t.equal(learningRateAt(1, 10, 4, 'constant_with_warmup', 4), 1)
  t.equal(warmupStepsFor(100, 0, 0.1), 10)
  t.equal(warmupStepsFor(100, 7, 0.1), 7, 'warmup_steps wins over warmup_ratio')
})

t.test(
  "datasets: dataset_info.json names, LLaMA-Factory's column mapping, alpaca history, openai-style messages",
  async (t) => {
    const dir = t.testdir({
      data: {
        'dataset_info.json': JSON.stringify({
          mapped: { file_name: 'mapped.json', columns: { prompt: 'q', response: 'a' } },
          chat: {
            file_name: 'chat.json',
            formatting: 'sharegpt',
            columns: { messages: 'turns' },
            tags: { role_tag: 'who', content_tag: 'text', user_tag: 'me', assistant_tag: 'bot' },
          },
        }),
        'mapped.json': JSON.stringify([{ q: 'Q1', a: 'A1' }]),
        'chat.json': JSON.stringify([
          {
            turns: [
              { who: 'me', text: 'hi' },
              { who: 'bot', text: 'hello' },
            ],
          },
        ]),
      },
      'alpaca.jsonl':
        JSON.stringify({ instruction: 'Do it', input: 'now', output: 'done', system: 'S', history: [['h1', 'r1']] }) +
        '\n',
      'openai.jsonl': `${JSON.stringify({
        messages: [
          { role: 'user', content: 'u' },
          { role: 'assistant', content: 'a' },
        ],
      })}\n`,
    })
    const examples = await loadExamples({
      names: ['mapped', 'chat', 'alpaca.jsonl', 'openai.jsonl'],
      stage: 'sft',
      datasetDir: join(dir, 'data'),
      baseDir: dir,
    })
    t.same(examples, [
      {
        kind: 'conversation',
        messages: [
          { role: 'user', content: 'Q1' },
          { role: 'assistant', content: 'A1' },
        ],
      },
      {
        kind: 'conversation',
        messages: [
          { role: 'user', content: 'hi' },
          { role: 'assistant', content: 'hello' },
        ],
      },
      {
        kind: 'conversation',
        messages: [
          { role: 'system', content: 'S' },
          { role: 'user', content: 'h1' },
          { role: 'assistant', content: 'r1' },
          { role: 'user', content: 'Do it\nnow' },
          { role: 'assistant', content: 'done' },
        ],
      },
      {
        kind: 'conversation',
        messages: [
          { role: 'user', content: 'u' },
          { role: 'assistant', content: 'a' },
        ],
      },
    ])
    await t.rejects(loadExamples({ names: ['nope'], stage: 'sft', datasetDir: join(dir, 'data'), baseDir: dir }), {
      message: /dataset "nope" not found.*it has: mapped, chat/,
    })
  },
)

t.test('malformed data: errors carry the file and line', async (t) => {
  const dir = t.testdir({
    'array.json': '[\n  {"text": "a"},\n  {"text": 3}\n]\n',
    'broken.json': '[\n  {"text": "a"},\n  {"text": }\n]\n',
    'turns.jsonl': `${JSON.stringify({
      conversations: [
        { from: 'gpt', value: 'x' },
        { from: 'human', value: 'y' },
      ],
    })}\n`,
    'roles.jsonl': `${JSON.stringify({ conversations: [{ from: 'alien', value: 'x' }] })}\n`,
    'strings.jsonl':
      JSON.stringify({
        conversations: [
          { from: 'human', value: 'q' },
          { from: 'gpt', value: 'a' },
        ],
      }) +
      '\n' +
      JSON.stringify({ conversations: ['hello', 'hi'] }) +
      '\n',
  })
  await t.rejects(loadExamples({ names: ['array.json'], stage: 'pt', datasetDir: dir, baseDir: dir }), {
    message: /array\.json:3: "text" must be a string, got 3/,
  })
  await t.rejects(readRecords(join(dir, 'broken.json')), { message: /broken\.json:3: invalid JSON/ })
  await t.rejects(loadExamples({ names: ['turns.jsonl'], stage: 'sft', datasetDir: dir, baseDir: dir }), {
    message: /turns\.jsonl:1: messages must alternate user\/assistant, but turn 0 is assistant/,
  })
  await t.rejects(loadExamples({ names: ['roles.jsonl'], stage: 'sft', datasetDir: dir, baseDir: dir }), {
    message: /roles\.jsonl:1: message 0 has from "alien" \(valid: human, user, gpt, assistant, system\)/,
  })
  await t.rejects(loadExamples({ names: ['strings.jsonl'], stage: 'sft', datasetDir: dir, baseDir: dir }), {
    code: 'LLAMAPRO_DATASET',
    message:
      /strings\.jsonl:2: conversations\[0\] must be an object like \{"from": "human", "value": "\.\.\."\}, got "hello"/,
  })
  writeFileSync(join(dir, 'empty.jsonl'), '\n')
  await t.rejects(loadExamples({ names: ['empty.jsonl'], stage: 'pt', datasetDir: dir, baseDir: dir }), {
    message: /no examples in/,
  })
})

t.test('a model folder without tokenizer.json says how to get one', async (t) => {
  await t.rejects(loadTokenizer(t.testdir()), {
    code: 'LLAMAPRO_TOKENIZER',
    message: /no tokenizer\.json.*AutoTokenizer\.from_pretrained\(dir\)\.save_pretrained\(dir\)/,
  })
})
