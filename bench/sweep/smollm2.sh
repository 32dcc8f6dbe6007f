#!/usr/bin/env bash
# The sweep of docs/guides/sweep.md: SmolLM2-135M-Instruct (from GGUF), continued pre-training on the descriptions of the Debian
# packages installed here, with general English (GNU GPL v3 paragraphs, never trained on) as the text to keep;
# pro:6 (on a copy expanded by 6 blocks), last:6 and full, 3 data-order seeds each.
#   bench/sweep/smollm2.sh          (SWEEP_DIR=/tmp/llamapro-sweep-smollm2, STEPS=20, SEEDS=3)
# The same command continues an interrupted sweep. The report is copied to bench/results/sweep-smollm2/.
set -euo pipefail
cd "$(dirname "$0")/../.."
W="${SWEEP_DIR:-/tmp/llamapro-sweep-smollm2}"
STEPS="${STEPS:-20}"
SEEDS="${SEEDS:-3}"
gguf="${LLAMAPRO_CACHE:-$HOME/.cache/llamapro}/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
LLAMAPRO="${LLAMAPRO:-node dist/cli/main.js}"
mkdir -p "$W/data"

# The walkthrough's data (bench/gguf/walkthrough.sh): 90% of the descriptions train, 60 of the rest are held out.
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
    for r in recs[:min(held, 60)]:
        f.write(json.dumps({'text': r}) + '\n')
gpl = [p.strip() for p in open('/usr/share/common-licenses/GPL-3', encoding='utf-8').read().split('\n\n') if len(p.strip()) > 200]
with open(f'{out}/general.jsonl', 'w') as f:
    for p in gpl[:20]:
        f.write(json.dumps({'text': ' '.join(p.split())}) + '\n')
print(f'data: {len(recs) - held} train / {min(held, 60)} held-out package descriptions, {min(20, len(gpl))} GPL paragraphs')
PY

[ -f "$W/smollm2/config.json" ] || $LLAMAPRO import "$gguf" "$W/smollm2"
cat > "$W/train.yaml" <<YAML
model_name_or_path: $W/smollm2
stage: pt
dataset: $W/data/train.jsonl
cutoff_len: 128
per_device_train_batch_size: 4
per_device_eval_batch_size: 4
learning_rate: 1.0e-4
lr_scheduler_type: cosine
warmup_ratio: 0.1
logging_steps: 5
bf16: true
seed: 42
output_dir: $W/unused
YAML
$LLAMAPRO sweep "$W/train.yaml" --strategies pro:6,last:6,full --steps "$STEPS" --seeds "$SEEDS" \
  --eval "$W/data/heldout.jsonl" --keep "$W/data/general.jsonl" --out "$W/sweep"
mkdir -p bench/results/sweep-smollm2
cp "$W"/sweep/report.md "$W"/sweep/report.json "$W"/sweep/*.png "$W"/sweep/*.svg bench/results/sweep-smollm2/
