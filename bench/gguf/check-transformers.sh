#!/usr/bin/env bash
# Opt-in check of `llamapro import` against transformers' GGUF loader and llamapro's own forward pass.
#   bench/gguf/check-transformers.sh [file.gguf]     (default: the SmolLM2 GGUF scripts/fetch-smollm2.sh fetches)
# Needs a Python with transformers and torch 2.x: LLAMAPRO_TF_PYTHON, default /tmp/llamapro-lf-venv/bin/python.
# The gguf package is lent from .venv when that Python lacks it. Results: bench/results/gguf-transformers.{json,md}.
set -euo pipefail
cd "$(dirname "$0")/../.."
gguf="${1:-${LLAMAPRO_CACHE:-$HOME/.cache/llamapro}/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf}"
py="${LLAMAPRO_TF_PYTHON:-/tmp/llamapro-lf-venv/bin/python}"
[ -x "$py" ] || { echo "check-transformers: no Python with transformers at $py (set LLAMAPRO_TF_PYTHON)" >&2; exit 1; }
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
shim="$work/shim"
mkdir -p "$shim"
if ! "$py" -c 'import gguf' 2>/dev/null; then
  site="$(.venv/bin/python -c 'import gguf, os; print(os.path.dirname(os.path.dirname(gguf.__file__)))')"
  ln -s "$site"/gguf "$site"/gguf-*.dist-info "$shim"/
fi
npm run -s build:ts
node dist/cli/main.js import "$gguf" "$work/hf" --dtype float32
PYTHONPATH="$shim${PYTHONPATH:+:$PYTHONPATH}" "$py" bench/gguf/check_transformers.py "$gguf" "$work/hf" > "$work/tf.json"
node --input-type=module - "$work/hf" "$work/tf.json" <<'JS'
import { readFileSync, writeFileSync } from 'node:fs'
import { LlamaModel } from './dist/index.js'
const [dir, tfPath] = process.argv.slice(2)
const tf = JSON.parse(readFileSync(tfPath, 'utf8'))
const model = await LlamaModel.load(dir, { dtype: 'float32' })
const { logits, shape } = await model.forward([tf.ids])
const vocab = shape[2]
const last = logits.subarray((shape[1] - 1) * vocab, shape[1] * vocab)
let worst = 0, maxAbs = 0, argOurs = 0, argTf = 0
for (let i = 0; i < vocab; i++) {
  worst = Math.max(worst, Math.abs(last[i] - tf.transformersLogitsLast[i]))
  maxAbs = Math.max(maxAbs, Math.abs(tf.transformersLogitsLast[i]))
  if (last[i] > last[argOurs]) argOurs = i
  if (tf.transformersLogitsLast[i] > tf.transformersLogitsLast[argTf]) argTf = i
}
model.dispose()
delete tf.transformersLogitsLast
tf.llamaproForward = { lastPositionMaxAbsDiff: worst, maxAbs, argmaxEqual: argOurs === argTf }
const tokRows = tf.tokenizer.map((r) => `| ${JSON.stringify(r.text).slice(1, -1).replace(/\|/g, '\\|')} | ${r.equal ? 'equal' : `differ: transformers ${JSON.stringify(r.transformersGguf)} vs llamapro ${JSON.stringify(r.llamapro)}`} |`)
const md = [
  '# GGUF import against transformers',
  '',
  `transformers ${tf.transformers}, torch ${tf.torch} (CPU, float32); llamapro on its own LibTorch. Command: \`bench/gguf/check-transformers.sh\``,
  '',
  `- weights: ${tf.weights.tensors} tensors; largest difference from transformers' dequantization ${tf.weights.maxAbsDiff}; unequal: ${tf.weights.unequal.length ? tf.weights.unequal.join(', ') : 'none'}`,
  `- logits (${tf.logits.positions} positions of a chat prompt), transformers from the GGUF vs transformers from llamapro's folder: max |diff| ${tf.logits.maxAbsDiff.toExponential(2)} (logits up to ${tf.logits.maxAbs.toFixed(1)}), argmax equal: ${tf.logits.argmaxEqual}; next token ${JSON.stringify(tf.logits.nextToken)}`,
  `- llamapro's own forward on its import vs transformers (last position): max |diff| ${worst.toExponential(2)}, argmax equal: ${argOurs === argTf}`,
  '',
  '| text | token ids: transformers GGUF tokenizer vs llamapro tokenizer.json |',
  '|---|---|',
  ...tokRows,
].join('\n')
console.log(md)
writeFileSync('bench/results/gguf-transformers.json', `${JSON.stringify(tf, null, 2)}\n`)
writeFileSync('bench/results/gguf-transformers.md', `${md}\n`)
JS
