#!/usr/bin/env bash
# Opt-in: trains the same LLaMA-Factory YAMLs (cases/*.yaml: sft with the default template, sft with named templates,
# packed pt, use_llama_pro) with LLaMA-Factory 0.9.5 itself and with llamapro, from one working folder laid out as
# LLaMA-Factory's repository (models/, data/dataset_info.json; paths relative to it), and compares the token ids,
# labels and the loss logged at every step, and runs LlamaBoard's own monitor code over both output folders. Writes
# bench/results/llamafactory-parity.md and .json.
#
# usage: bench/llamafactory-parity/run.sh [case ...]        (default: every case)
#   LLAMAPRO_LF_VENV   the Python venv with llamafactory and torch (default /tmp/llamapro-lf-venv; made once, reused)
#   LLAMAPRO_LF_WORK   the working folder (default /tmp/llamapro-lf-parity; remade on every run)
#   LLAMAPRO_LF_RESULTS  the name of the results in bench/results (default llamafactory-parity; the LoRA cases,
#                      lora-pro and lora-all, are recorded as llamafactory-parity-lora)
#
# The venv comes from PyPI only: torch's Linux x86_64 wheel on PyPI is a CUDA build whose libraries link against the
# nvidia-* wheels (measured: `import torch` fails without them, so --no-deps does not work), about 5.9 GB in all; on
# a machine without a GPU it runs on the CPU. Needs `npm run build:ts` (dist/) and python3 >= 3.9 with venv.
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
venv="${LLAMAPRO_LF_VENV:-/tmp/llamapro-lf-venv}"
work="${LLAMAPRO_LF_WORK:-/tmp/llamapro-lf-parity}"
results="${LLAMAPRO_LF_RESULTS:-llamafactory-parity}"
cases=("$@")
if [ "${#cases[@]}" -eq 0 ]; then cases=(sft-default sft-alpaca sft-chatml sft-qwen sft-smollm2 pt-packed llama-pro); fi

if ! "$venv/bin/python" -c 'import llamafactory, torch, torchaudio' >/dev/null 2>&1; then
  echo "installing llamafactory==0.9.5 and torch 2.11.0 into $venv (from PyPI, several minutes; log: $venv.log)"
  python3 -m venv "$venv"
  # torchaudio must be built for the same torch: 2.11.1 fails to load its library with torch 2.11.0.
  nice -n 19 "$venv/bin/pip" install "torch==2.11.0" "torchvision==0.26.0" "torchaudio==2.11.0" "llamafactory==0.9.5" > "$venv.log" 2>&1 ||
    { tail -20 "$venv.log"; exit 1; }
fi
[ -f "$repo/dist/cli/main.js" ] || (cd "$repo" && npm run build:ts)

rm -rf "$work"
mkdir -p "$work/logs" "$work/tokens"
(cd "$repo" && npx tsx bench/llamafactory-parity/fixtures.ts "$work")
# The LoRA cases start both tools from the same PEFT adapters (adapter_name_or_path), made by PEFT here.
case " ${cases[*]}" in *" lora"*) (cd "$work" && "$venv/bin/python" "$repo/bench/llamafactory-parity/lora_adapters.py" > "$work/logs/lora-adapters.log" 2>&1) || { tail -5 "$work/logs/lora-adapters.log"; exit 1; } ;; esac
cp "$repo"/bench/llamafactory-parity/cases/*.yaml "$work/"
"$venv/bin/python" - > "$work/versions.json" <<'PY'
import json, torch, transformers, llamafactory
print(json.dumps({"llamafactory": llamafactory.__version__, "transformers": transformers.__version__, "torch": torch.__version__}))
PY
node --input-type=module -e "
import { readFileSync, writeFileSync } from 'node:fs'
import { info } from '$repo/dist/index.js'
const v = JSON.parse(readFileSync('$work/versions.json', 'utf8'))
const i = info()
writeFileSync('$work/versions.json', JSON.stringify({ ...v, llamapro: i.llamapro.version, libtorch: i.libtorch.version }))
"

# LLaMA-Factory on the CPU, offline, without the version check that transformers' exact version would fail.
lf_env=(env CUDA_VISIBLE_DEVICES= DISABLE_VERSION_CHECK=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 WANDB_DISABLED=true)
cd "$work"
for case in "${cases[@]}"; do
  echo "== $case"
  "${lf_env[@]}" "$venv/bin/python" "$repo/bench/llamafactory-parity/tokens_llamafactory.py" "$case.yaml" "tokens/$case.llamafactory.json" > "logs/$case.tokens-llamafactory.log" 2>&1 || echo "   LLaMA-Factory's tokens failed (logs/$case.tokens-llamafactory.log)"
  "$repo/node_modules/.bin/tsx" "$repo/bench/llamafactory-parity/tokens-llamapro.ts" "$case.yaml" "tokens/$case.llamapro.json" > "logs/$case.tokens-llamapro.log" 2>&1 || echo "   llamapro's tokens failed (logs/$case.tokens-llamapro.log)"
  "${lf_env[@]}" nice -n 10 "$venv/bin/llamafactory-cli" train "$case.yaml" "output_dir=saves/llamafactory/$case" > "logs/$case.llamafactory.log" 2>&1 || echo "   llamafactory-cli train failed (logs/$case.llamafactory.log)"
  node "$repo/dist/cli/main.js" train "$case.yaml" "output_dir=saves/llamapro/$case" > "logs/$case.llamapro.log" 2>&1 || echo "   llamapro train failed (logs/$case.llamapro.log)"
done
mkdir -p "$repo/bench/results"
"$venv/bin/python" "$repo/bench/llamafactory-parity/compare.py" "$work" "$repo/bench/results/$results" "${cases[@]}"
lora_cases=()
for case in "${cases[@]}"; do case "$case" in lora*) lora_cases+=("$case") ;; esac; done
if [ "${#lora_cases[@]}" -gt 0 ]; then "$venv/bin/python" "$repo/bench/llamafactory-parity/compare_adapters.py" "$work" "$repo/bench/results/$results" "${lora_cases[@]}"; fi
echo "wrote bench/results/$results.md and .json (logs in $work/logs)"
