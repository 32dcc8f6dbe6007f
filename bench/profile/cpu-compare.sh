#!/usr/bin/env bash
# CPU time per training step on one thread, llamapro against the same step under transformers + LLaMA-Factory's
# checkpointing (torch_step.py), checkpointing on and off, the tools alternating: a comparison that a shared
# machine disturbs far less than wall time (each side's work runs on its one thread; what it costs does not depend
# on what else runs, apart from caches). Run from the folder of speed.sh's work (models/, data/, the YAML).
# usage: bench/profile/cpu-compare.sh ROUNDS [steps]
#   LLAMAPRO_LF_VENV   the venv with llamafactory and torch (default /tmp/llamapro-lf-venv)
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
venv="${LLAMAPRO_LF_VENV:-/tmp/llamapro-lf-venv}"
rounds="${1:-3}" steps="${2:-4}"
for round in $(seq 1 "$rounds"); do
  for setting in on off; do
    flag=true; [ "$setting" = off ] && flag=false
    order=(llamapro torch); [ $((round % 2)) -eq 0 ] && order=(torch llamapro)
    for tool in "${order[@]}"; do
      if [ "$tool" = llamapro ]; then
        OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 node "$repo/dist/cli/main.js" bench smollm2-llama-pro.yaml --gradient-checkpointing "$setting" \
          --steps "$steps" --warmup 1 --json 2>/dev/null |
          node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{const r=JSON.parse(s);const x=r.results[0];console.log(JSON.stringify({tool:"llamapro",round:+process.argv[1],checkpointing:x.checkpointing,cpu_ms:Math.round(x.cpuMsPerStep),shape:r.shapes[1][0]}))})' "$round"
      else
        "$venv/bin/python" "$repo/bench/profile/torch_step.py" models/smollm2-pro --threads 1 --seq 67 --checkpointing "$setting" --steps "$steps" 2>/dev/null |
          grep '^{' | sed "s/^{/{\"tool\": \"transformers+LF\", \"round\": $round, /"
      fi
    done
  done
done
