import t from 'tap'
import { execFile, spawn } from 'node:child_process'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { LlamaModel } from '../lib/index.js'
import { generate } from '../lib/generate/generate.js'
import { loadTokenizer } from '../lib/data/tokenizer.js'
import { REPO_ROOT } from './helpers/python.js'
import { writeDatasets, writeTrainableModel } from './helpers/trainable-model.js'

const CLI = join(REPO_ROOT, 'dist', 'cli', 'main.js')
const run = promisify(execFile)

function runWithStdin(args: string[], input: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], { stdio: ['pipe', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d) => (stdout += d))
    child.stderr.on('data', (d) => (stderr += d))
    child.on('error', reject)
    child.on('close', (code) => resolve({ code, stdout, stderr }))
    child.stdin.end(input)
  })
}

t.test('chat through stdin: streamed replies, history, /reset and /exit', async (t) => {
  const dir = t.testdir()
  await writeTrainableModel(dir, { seed: 23, std: 0.3 })
  const model = await LlamaModel.load(dir)
  const o = { maxNewTokens: 8, template: 'default' }
  const first = { role: 'user' as const, content: 'Tell me about an animal.' }
  const r1 = await generate(model, [first], o)
  const r2 = await generate(
    model,
    [first, { role: 'assistant', content: r1.text }, { role: 'user', content: 'More.' }],
    o,
  )
  model.dispose()
  const input = `${['Tell me about an animal.', 'More.', '/reset', 'Tell me about an animal.', '/exit', 'never read'].join('\n')}\n`
  const out = await runWithStdin(['chat', dir, '--max-new-tokens', '8', '--template', 'default'], input)
  t.equal(out.code, 0, out.stderr)
  t.equal(out.stdout, `Assistant: ${r1.text}\nAssistant: ${r2.text}\n(conversation reset)\nAssistant: ${r1.text}\n`)
  t.ok(r1.tokenIds.length > 0 && r2.text !== r1.text, 'two different replies')
})

t.test('generate --json and eval of two models with --predict', async (t) => {
  const dir = t.testdir()
  const a = join(dir, 'a')
  const b = join(dir, 'b')
  await writeTrainableModel(a, { seed: 29, std: 0.3 })
  await writeTrainableModel(b, { seed: 31, std: 0.3 })
  const data = await writeDatasets(dir)
  const model = await LlamaModel.load(a)

  const { stdout } = await run(process.execPath, [
    CLI,
    'generate',
    a,
    '--prompt',
    'The cat',
    '--max-new-tokens',
    '6',
    '--json',
  ])
  const json = JSON.parse(stdout)
  const expected = await generate(model, 'The cat', { maxNewTokens: 6 })
  t.same(json.tokenIds, expected.tokenIds)
  t.equal(json.text, expected.text)
  t.equal(json.finishReason, expected.finishReason)
  const plain = await run(process.execPath, [CLI, 'generate', a, '--prompt', 'The cat', '--max-new-tokens', '6'])
  t.equal(plain.stdout, `${expected.text}\n`, 'the text streams to stdout')
  t.match(plain.stderr, /\[6 tokens, length; prefill \d+ tokens in \d+ ms, [\d.]+ tokens\/s\]/)

  const predictFile = join(dir, 'predictions.jsonl')
  const evalOut = await run(process.execPath, [
    CLI,
    'eval',
    a,
    '--compare',
    b,
    '--dataset',
    data.sharegpt,
    '--max-samples',
    '3',
    '--batch-size',
    '2',
    '--predict',
    predictFile,
    '--max-new-tokens',
    '5',
    '--json',
  ])
  const report = JSON.parse(evalOut.stdout)
  t.equal(report.examples, 3)
  t.equal(report.models.length, 2)

  // Expected loss: each example as "Human: {q}<eos>\nAssistant:" + "{answer}<eos>\n" (the default template),
  // scored from full-forward logits here, one example at a time, averaged over all answer tokens.
  const tokenizer = await loadTokenizer(a)
  const records = readFileSync(data.sharegpt, 'utf8')
    .trim()
    .split('\n')
    .slice(0, 3)
    .map((l) => JSON.parse(l).conversations)
  const sequences = records.map((c: { value: string }[]) => {
    const prompt = [...tokenizer.encode(`Human: ${c[0]!.value}`), tokenizer.eosId, ...tokenizer.encode('\nAssistant:')]
    const answer = [...tokenizer.encode(c[1]!.value), tokenizer.eosId, ...tokenizer.encode('\n')]
    return { ids: [...prompt, ...answer], start: prompt.length }
  })
  for (const [i, dirOf] of [a, b].entries()) {
    const m = i === 0 ? model : await LlamaModel.load(dirOf)
    let sum = 0
    let count = 0
    for (const s of sequences) {
      const { logits } = await m.forward([s.ids])
      const vocab = m.config.vocabSize
      for (let p = s.start; p < s.ids.length; p++) {
        const row = logits.subarray((p - 1) * vocab, p * vocab)
        const max = Math.max(...row)
        const logZ = max + Math.log(row.reduce((acc, x) => acc + Math.exp(x - max), 0))
        sum += logZ - row[s.ids[p]!]!
        count++
      }
    }
    if (i === 1) m.dispose()
    const got = report.models[i]
    t.equal(got.tokens, count, `model ${i}: ${count} answer tokens`)
    t.ok(
      Math.abs(got.loss - sum / count) < 1e-4,
      `model ${i}: loss ${got.loss.toFixed(5)} vs ${(sum / count).toFixed(5)} from the logits`,
    )
    t.ok(Math.abs(got.perplexity - Math.exp(got.loss)) < 1e-9 * got.perplexity)
  }
  t.not(report.models[0].loss, report.models[1].loss)
  const table = await run(process.execPath, [
    CLI,
    'eval',
    a,
    '--compare',
    b,
    '--dataset',
    data.sharegpt,
    '--max-samples',
    '3',
    '--batch-size',
    '2',
  ])
  t.match(
    table.stdout,
    new RegExp(
      `${a}\\s+${report.models[0].loss.toFixed(4)}\\s+${report.models[0].perplexity.toFixed(3)}\\s+${report.models[0].tokens}`,
    ),
  )
  t.match(table.stdout, /difference \(compare - model\): loss [+-]\d\.\d{4}, perplexity ×\d+\.\d{3}/)

  const lines = readFileSync(predictFile, 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l))
  t.equal(lines.length, 3)
  for (const [i, line] of lines.entries()) {
    t.same(Object.keys(line), ['prompt', 'predict', 'label'])
    t.equal(line.label, records[i]![1]!.value)
    const answer = await generate(model, [{ role: 'user', content: records[i]![0]!.value }], {
      template: 'default',
      maxNewTokens: 5,
    })
    t.equal(line.predict, answer.text)
    t.equal(line.prompt, tokenizer.decode(answer.promptTokenIds))
  }
  model.dispose()

  const bad = await run(process.execPath, [CLI, 'eval', a, '--dataset', 'nope.json']).catch((e) => e)
  t.equal(bad.code, 1)
  t.match(bad.stderr, /dataset "nope.json" not found/)
  const usage = await run(process.execPath, [CLI, 'generate', a]).catch((e) => e)
  t.equal(usage.code, 2)
  t.match(usage.stderr, /give either --prompt .* or --messages FILE/)

  // --messages: a whole conversation from a file, answered as generate() answers it.
  const conversation = [
    { role: 'user', content: 'Tell me about an animal.' },
    { role: 'assistant', content: 'A fox.' },
    { role: 'user', content: 'More.' },
  ]
  const messagesFile = join(dir, 'messages.json')
  writeFileSync(messagesFile, JSON.stringify(conversation))
  const fromFile = JSON.parse(
    (await run(process.execPath, [CLI, 'generate', a, '--messages', messagesFile, '--max-new-tokens', '5', '--json']))
      .stdout,
  )
  const reloaded = await LlamaModel.load(a)
  const direct = await generate(reloaded, conversation as never, { maxNewTokens: 5 })
  reloaded.dispose()
  t.same(fromFile.tokenIds, direct.tokenIds)
  t.equal(fromFile.promptTokens, direct.promptTokenIds.length)
})

t.test('chat history keeps the system message and drops the oldest turns first', async (t) => {
  const { trimHistory } = await import('../lib/cli/chat.js')
  const m = (role: 'system' | 'user' | 'assistant', content: string) => ({ role, content })
  const history = [
    m('system', 's'),
    m('user', 'u1'),
    m('assistant', 'a1'),
    m('user', 'u2'),
    m('assistant', 'a2'),
    m('user', 'u3'),
  ]
  const size = (ms: readonly { content: string }[]) => ms.reduce((n, x) => n + x.content.length, 0)
  t.same(
    trimHistory(history, (ms) => size(ms) <= 100),
    history,
  )
  t.same(
    trimHistory(history, (ms) => size(ms) <= 7),
    [m('system', 's'), m('user', 'u2'), m('assistant', 'a2'), m('user', 'u3')],
  )
  t.same(
    trimHistory(history, (ms) => size(ms) <= 3),
    [m('system', 's'), m('user', 'u3')],
  )
  t.equal(
    trimHistory(history, (ms) => size(ms) <= 2),
    null,
    'the new message alone does not fit',
  )
})
