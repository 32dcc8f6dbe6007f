#!/usr/bin/env bash
# The walkthrough of docs/guides/smollm2.md, end to end on this machine: a real pretrained model from GGUF, grown by LLaMA-Pro block
# expansion, its new blocks trained on a domain it has seen little of, held-out loss before and after.
#   bench/gguf/walkthrough.sh            (WALK_DIR=/tmp/llamapro-walkthrough, STEPS=30)
# Domain: the descriptions of the Debian packages installed here (/var/lib/dpkg/status), 90% train, 10% held out.
# General text: the GNU GPL v3 (/usr/share/common-licenses/GPL-3), which llamapro never trains on.
set -euo pipefail
cd "$(dirname "$0")/../.."
W="${WALK_DIR:-/tmp/llamapro-walkthrough}"
STEPS="${STEPS:-30}"
gguf="${LLAMAPRO_CACHE:-$HOME/.cache/llamapro}/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
rm -rf "$W"; mkdir -p "$W/data"
npm run -s build:ts
llamapro() { node dist/cli/main.js "$@"; }
t() { local s=$SECONDS; "$@"; echo "  ($(( SECONDS - s )) s)"; }

python3 - "$W/data" <<'PY'
import json, random, re, sys
out = sys.argv[1]
recs = []
for para in open('/var/lib/dpkg/status', encoding='utf-8').read().split('\n\n'):
    m = re.search(r'^Package: (.*)$', para, re.M)
    d = re.search(r'^Description: (.*(?:\n .*)*)', para, re.M)
    if m and d:
        recs.append(f"Package: {m.group(1)}\nDescription: {d.group(1)}")
random.Random(14).shuffle(recs)
held = len(recs) // 10
with open(f'{out}/train.jsonl', 'w') as f:
    for r in recs[held:]:
        f.write(json.dumps({'text': r}) + '\n')
with open(f'{out}/heldout.jsonl', 'w') as f:
    for r in recs[:held]:
        f.write(json.dumps({'text': r}) + '\n')
gpl = [p.strip() for p in open('/usr/share/common-licenses/GPL-3', encoding='utf-8').read().split('\n\n') if len(p.strip()) > 200]
with open(f'{out}/general.jsonl', 'w') as f:
    for p in gpl[:20]:
        f.write(json.dumps({'text': ' '.join(p.split())}) + '\n')
print(f'data: {len(recs) - held} train / {held} held-out package descriptions, {min(20, len(gpl))} GPL paragraphs')
PY

echo "== import"; t llamapro import "$gguf" "$W/smollm2"
echo "== expand"; t llamapro expand "$W/smollm2" "$W/smollm2-pro" --num-expand 6
echo "== verify"; t llamapro verify "$W/smollm2" "$W/smollm2-pro"
loss() { npx tsx bench/gguf/heldout-loss.ts "$1" "$2" --seq 128 --batch 4; }
echo "== held-out loss before training"
loss "$W/smollm2-pro" "$W/data/heldout.jsonl" | tee "$W/before-domain.json"
loss "$W/smollm2-pro" "$W/data/general.jsonl" | tee "$W/before-general.json"
cat > "$W/train.yaml" <<YAML
model_name_or_path: $W/smollm2-pro
stage: pt
finetuning_type: freeze
use_llama_pro: true
freeze_trainable_layers: 6
dataset: $W/data/train.jsonl
cutoff_len: 128
per_device_train_batch_size: 4
gradient_accumulation_steps: 1
learning_rate: 1.0e-4
lr_scheduler_type: cosine
warmup_ratio: 0.1
max_steps: $STEPS
logging_steps: 5
save_steps: 1000
bf16: true
output_dir: $W/out
YAML
echo "== train (the 6 new blocks only)"; t llamapro train "$W/train.yaml"
echo "== held-out loss after training"
loss "$W/out" "$W/data/heldout.jsonl" | tee "$W/after-domain.json"
loss "$W/out" "$W/data/general.jsonl" | tee "$W/after-general.json"
echo "== export the trained model for llama.cpp, and read it back"
t llamapro export "$W/out" "$W/smollm2-pro-q8_0.gguf" --type q8_0
.venv/bin/python -c "import gguf, sys; r = gguf.GGUFReader(sys.argv[1]); print('gguf reader:', len(r.tensors), 'tensors,', r.fields['llama.block_count'].contents(), 'blocks')" "$W/smollm2-pro-q8_0.gguf"
t llamapro import "$W/smollm2-pro-q8_0.gguf" "$W/back"
loss "$W/back" "$W/data/heldout.jsonl" | tee "$W/after-q8-domain.json"
echo "== what it answers, before and after (greedy)"
for m in smollm2-pro out; do
  echo "-- $m"
  llamapro generate "$W/$m" --chat --prompt "What is the capital of France? Answer in one sentence." --max-new-tokens 40
  llamapro generate "$W/$m" --max-new-tokens 40 --prompt $'Package: python3-numpy\nDescription:'
done
