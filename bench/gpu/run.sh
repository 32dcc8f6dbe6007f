#!/usr/bin/env bash
# The GPU machine's checks, as one script (../shared/GPU.md): build the same sources against the machine's CUDA
# LibTorch (python3's torch), then `llamapro info`, CUDA logits against transformers plus a short bf16 training
# run (check-cuda.ts), and the 1b bench with the PyTorch/transformers baseline. Everything lands in $OUT.
# Prepare on the development machine first (node and node_modules travel in .device/, see GPU.md), then run:
#   device run --carry .device -- bash bench/gpu/run.sh
# Not yet run: no session so far has had a GPU machine.
set -euo pipefail
OUT="${OUT:-/tmp/llamapro-gpu}"
mkdir -p "$OUT" /tmp/nodebin
xz -dc .device/node.xz > /tmp/nodebin/node && chmod +x /tmp/nodebin/node
export PATH=/tmp/nodebin:$PATH
tar xJf .device/node_modules.tar.xz
export LLAMAPRO_PYTHON=python3 LLAMAPRO_TEST_PYTHON=python3
# At most 8 files come back from $OUT: one log, the CUDA check, and the bench report's six files.
{
  node scripts/install.mjs 2>&1 | tail -n 20
  npx tsc -p tsconfig.build.json
  node dist/cli/main.js info --json
} 2>&1 | tee "$OUT/run.log"
npx tsx bench/gpu/check-cuda.ts | tee "$OUT/cuda-check.json"
node dist/cli/main.js bench 1b --device cuda --dtype bfloat16 --strategies full,last:2,pro:4 --baseline python \
  --steps 10 --warmup 3 --out "$OUT/bench-1b" 2>&1 | tee -a "$OUT/run.log"
