import t from 'tap'
import { createHash } from 'node:crypto'
import { readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { openCheckpoint } from '../lib/checkpoint/checkpoint.js'
import { LlamaModel } from '../lib/index.js'
import { encodeFloats } from './helpers/floats.js'
import { tinyRawConfig, writeTinyModel } from './helpers/tiny-model.js'
import { pythonSnippet, runPythonJson } from './helpers/python.js'

// sha256 of every tensor's bytes as the PyPI safetensors package reads them, plus its dtype and shape.
const HASH_TENSORS = `
import hashlib, json, sys, torch
from safetensors.torch import load_file
out = {}
for f in json.load(sys.stdin)["files"]:
    for name, t in load_file(f).items():
        raw = t.contiguous().view(torch.uint8) if t.element_size() != 1 else t.contiguous()
        out[name] = {"sha": hashlib.sha256(raw.numpy().tobytes()).hexdigest(), "dtype": str(t.dtype).replace("torch.", ""), "shape": list(t.shape)}
print(json.dumps(out))
`

type Hashes = Record<string, { sha: string; dtype: string; shape: number[] }>
const sha = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex')
const safetensorsFiles = (dir: string) =>
  readdirSync(dir)
    .filter((f) => f.endsWith('.safetensors'))
    .map((f) => join(dir, f))

t.test('files llamapro writes are read by the PyPI safetensors package with identical tensors', async (t) => {
  const dir = t.testdir()
  for (const dtype of ['F32', 'BF16', 'F16'] as const) {
    const fixture = await writeTinyModel(join(dir, `in-${dtype}`), { dtype, kvHeads: 2, seed: 4 })
    const model = await LlamaModel.load(fixture.dir)
    const out = join(dir, `out-${dtype}`)
    const saved = await model.save(out, { shardSize: 50_000 })
    model.dispose()
    t.ok(saved.files.length > 1, `${dtype}: ${saved.files.length} shards`)
    const hashes = await pythonSnippet<Hashes>(HASH_TENSORS, { files: safetensorsFiles(out) })
    t.same(Object.keys(hashes).sort(), [...fixture.tensors.keys()].sort())
    const torchName = { F32: 'float32', BF16: 'bfloat16', F16: 'float16' }[dtype]
    for (const [name, tensor] of fixture.tensors) {
      const expected = sha(encodeFloats(tensor.values, dtype).encoded)
      if (hashes[name]!.sha !== expected || hashes[name]!.dtype !== torchName) t.fail(`${dtype} ${name} differs`)
      t.same(hashes[name]!.shape, tensor.shape)
    }
    const index = JSON.parse(readFileSync(join(out, 'model.safetensors.index.json'), 'utf8'))
    t.same(Object.keys(index.metadata), ['total_parameters', 'total_size'])
    t.equal(
      index.metadata.total_parameters,
      [...fixture.tensors.values()].reduce((s, x) => s + x.values.length, 0),
    )
  }
})

t.test('a load -> save round trip is byte-identical in tensor data', async (t) => {
  const dir = t.testdir()
  for (const dtype of ['F32', 'BF16', 'F16'] as const) {
    const fixture = await writeTinyModel(join(dir, `in-${dtype}`), { dtype, seed: 8, tie: dtype === 'F16' })
    // computes in float32 on the CPU, saves back as the checkpoint's dtype
    const model = await LlamaModel.load(fixture.dir)
    await model.save(join(dir, `out-${dtype}`))
    model.dispose()
    const [a, b] = await Promise.all([openCheckpoint(fixture.dir), openCheckpoint(join(dir, `out-${dtype}`))])
    t.same(
      b.tensors.map((x) => [x.name, x.dtype, x.shape]),
      a.tensors.map((x) => [x.name, x.dtype, x.shape]),
    )
    const bytes = (x: (typeof a.tensors)[number]) => readFileSync(x.file).subarray(x.offset, x.offset + x.nbytes)
    const differing = a.tensors.filter((x, i) => !bytes(x).equals(bytes(b.tensors[i]!)))
    t.same(
      differing.map((x) => x.name),
      [],
      `${dtype}: every tensor's bytes are unchanged`,
    )
    const config = JSON.parse(readFileSync(join(dir, `out-${dtype}`, 'config.json'), 'utf8'))
    t.equal(config.torch_dtype, { F32: 'float32', BF16: 'bfloat16', F16: 'float16' }[dtype])
  }
})

t.test('files the PyPI safetensors package writes (sharded, with an index) are read by llamapro', async (t) => {
  const dir = t.testdir()
  const model = join(dir, 'python-model')
  const raw = tinyRawConfig({ kvHeads: 2, modelType: 'qwen2' })
  await pythonSnippet<{ ok: boolean }>(
    `
import json, os, sys
sys.path.insert(0, "bench/reference")
from llama_ref import random_model
from safetensors.torch import save_file
req = json.load(sys.stdin)
os.makedirs(req["dir"], exist_ok=True)
model = random_model(req["config"], seed=5)
state = {k: v.contiguous() for k, v in model.state_dict().items()}
names = list(state)
half = len(names) // 2
weight_map = {}
for i, part in enumerate([names[:half], names[half:]]):
    fname = f"model-{i + 1:05d}-of-00002.safetensors"
    save_file({k: state[k] for k in part}, os.path.join(req["dir"], fname), metadata={"format": "pt"})
    weight_map.update({k: fname for k in part})
total = sum(v.numel() * v.element_size() for v in state.values())
with open(os.path.join(req["dir"], "model.safetensors.index.json"), "w") as f:
    json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)
with open(os.path.join(req["dir"], "config.json"), "w") as f:
    json.dump(req["config"], f)
print(json.dumps({"ok": True}))
`,
    { dir: model, config: raw },
  )
  const loaded = await LlamaModel.load(model)
  const hashes = await pythonSnippet<Hashes>(HASH_TENSORS, { files: safetensorsFiles(model) })
  for (const p of loaded.parameters()) {
    const bytes = await loaded.native.tensorBytes(p.name, 'F32')
    if (sha(bytes) !== hashes[p.name]!.sha) t.fail(`${p.name} differs from what Python wrote`)
  }
  const ids = [[1, 5, 9, 13, 17, 21, 25, 29]]
  const ours = await loaded.forward(ids)
  loaded.dispose()
  writeFileSync(join(dirname(model), 'ids.json'), JSON.stringify({ ids }))
  const ref = await runPythonJson<{ logits: number[] }>([
    'bench/reference/llama_ref.py',
    'logits',
    model,
    join(dirname(model), 'ids.json'),
  ])
  let maxDiff = 0
  ours.logits.forEach((v, i) => (maxDiff = Math.max(maxDiff, Math.abs(v - ref.logits[i]!))))
  t.ok(maxDiff <= 1e-4, `logits match PyTorch on the Python-written model (max diff ${maxDiff.toExponential(2)})`)
})

t.test('save refuses a non-empty folder unless asked, and leaves nothing half-written', async (t) => {
  const dir = t.testdir()
  const fixture = await writeTinyModel(join(dir, 'in'))
  const model = await LlamaModel.load(fixture.dir)
  await t.rejects(model.save(fixture.dir), { code: 'LLAMAPRO_OUTPUT_EXISTS', message: /pass overwrite: true/ })
  await t.rejects(model.save(join(dir, 'x'), { shardSize: 'huge' }), { message: /shardSize "huge" is not a size/ })
  await model.save(join(dir, 'copy'))
  await model.save(join(dir, 'copy'), { overwrite: true, dtype: 'bfloat16' })
  model.dispose()
  t.same(readdirSync(dir).sort(), ['copy', 'in'], 'no temporary folders left behind')
  const config = JSON.parse(readFileSync(join(dir, 'copy', 'config.json'), 'utf8'))
  t.equal(config.torch_dtype, 'bfloat16')
})
