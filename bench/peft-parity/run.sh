#!/usr/bin/env bash
# Opt-in: llamapro's LoRA adapters against PEFT itself (PEFT needs torch 2.x; Debian's 1.13 cannot run it, so the CI
# suite checks the same math against test/reference/lora_reference.py instead). Uses the venv of
# bench/llamafactory-parity/run.sh (LLAMAPRO_LF_VENV, default /tmp/llamapro-lf-venv: torch, transformers, peft).
#   1. an adapter llamapro trains on the expanded blocks (with modules_to_save) loads in PeftModel.from_pretrained:
#      same logits as llamapro with it;
#   2. an adapter PEFT creates (random nonzero B, rsLoRA, modules_to_save) loads in llamapro: same logits;
#   3. llamapro merge --adapter equals PEFT's merge_and_unload() weights.
# Writes bench/results/peft-parity.json and .md.
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
venv="${LLAMAPRO_LF_VENV:-/tmp/llamapro-lf-venv}"
work="${LLAMAPRO_PEFT_WORK:-/tmp/llamapro-peft-parity}"
"$venv/bin/python" -c 'import peft, transformers, torch' || { echo "no peft/transformers/torch in $venv: run bench/llamafactory-parity/run.sh once to make it"; exit 1; }
rm -rf "$work" && mkdir -p "$work"
cd "$repo"
npx tsx bench/peft-parity/llamapro-side.ts prepare "$work"
"$venv/bin/python" bench/peft-parity/peft_side.py create "$work"
npx tsx bench/peft-parity/llamapro-side.ts apply "$work" "$work/peft-adapter" "$work/llamapro-logits-of-peft-adapter.json"
npx tsx bench/peft-parity/llamapro-side.ts merge "$work" "$work/peft-adapter" "$work/llamapro-merged" > /dev/null
"$venv/bin/python" bench/peft-parity/peft_side.py compare "$work" > "$work/compare.json"
versions="$("$venv/bin/python" -c 'import json, peft, transformers, torch; print(json.dumps({"peft": peft.__version__, "transformers": transformers.__version__, "torch": torch.__version__}))')"
node --input-type=module -e "
import { readFileSync, writeFileSync } from 'node:fs'
const c = JSON.parse(readFileSync('$work/compare.json', 'utf8'))
const v = JSON.parse('$versions')
const ok = c.llamapro_adapter_effect_on_logits > 1e-2 && c.peft_adapter_effect_on_logits > 1e-2 && c.llamapro_adapter_in_peft_max_logit_diff < 1e-4 && c.peft_adapter_in_llamapro_max_logit_diff < 1e-4 && c.merge_max_weight_diff < 1e-6 && c.merge_tensor_names_differing.length === 0
writeFileSync('bench/results/peft-parity.json', JSON.stringify({ date: new Date().toISOString(), versions: v, ok, ...c }, null, 2) + '\n')
const md = ['# llamapro LoRA adapters against PEFT', '', 'bench/peft-parity/run.sh, ' + new Date().toISOString().slice(0, 10) + ': peft ' + v.peft + ', transformers ' + v.transformers + ', torch ' + v.torch + ' (CPU, float32).',
  'Tiny LLaMA (4 layers, expanded to 6), adapters on the expanded blocks 2 and 5 (all 7 linears), r 4, modules_to_save norm.', '',
  '| check | max abs difference | bound |', '|---|---|---|',
  '| adapter trained by llamapro, loaded by PeftModel.from_pretrained: logits | ' + c.llamapro_adapter_in_peft_max_logit_diff.toExponential(2) + ' | 1e-4 |',
  '| adapter created by PEFT (random B, rsLoRA), loaded by llamapro: logits | ' + c.peft_adapter_in_llamapro_max_logit_diff.toExponential(2) + ' | 1e-4 |',
  '| llamapro merge --adapter vs merge_and_unload(): weights | ' + c.merge_max_weight_diff.toExponential(2) + ' | 1e-6 |', '',
  'For scale: the adapters move the logits from the base model by up to ' + c.llamapro_adapter_effect_on_logits.toExponential(2) + ' (llamapro-trained) and ' + c.peft_adapter_effect_on_logits.toExponential(2) + ' (PEFT-created).', '',
  ok ? 'All within bounds.' : 'NOT within bounds: see peft-parity.json.']
writeFileSync('bench/results/peft-parity.md', md.join('\n') + '\n')
console.log(md.join('\n'))
process.exit(ok ? 0 : 1)
"
