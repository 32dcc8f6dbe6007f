"""Opt-in: llamapro's import of a GGUF against transformers' own GGUF loader (from_pretrained(dir, gguf_file=...)).

Needs a Python with transformers and torch 2.x (and the gguf package; check-transformers.sh lends it the one in
.venv). Compares, for one GGUF and llamapro's import of it (float32):
  - token ids of varied texts: transformers' GGUF tokenizer vs llamapro's tokenizer.json (loaded by transformers)
  - every weight: transformers' dequantized state_dict vs llamapro's model.safetensors
  - logits of a chat prompt: the model transformers built from the GGUF vs the one it loads from llamapro's folder
Writes JSON to stdout (with the prompt's ids and transformers' logits for llamapro's own forward to be compared).
"""
import json
import os
import sys

import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

gguf_path, ours = sys.argv[1], sys.argv[2]
gguf_dir, gguf_name = os.path.dirname(gguf_path), os.path.basename(gguf_path)
TEXTS = [
    'Hello world',
    '  two  spaces\n\nnewlines\ttab\r\n',
    'digits 1234567 and 3.14159, 2026-12-01',
    'unicode: café naïve 日本語 🦙 Привет',
    '<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n',
    "it's we'll they've   ",
]
out = {'transformers': __import__('transformers').__version__, 'torch': torch.__version__}

tok_gguf = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=gguf_name)
tok_ours = AutoTokenizer.from_pretrained(ours)
rows = []
for text in TEXTS:
    a = tok_gguf(text, add_special_tokens=False)['input_ids']
    b = tok_ours(text, add_special_tokens=False)['input_ids']
    rows.append({'text': text, 'equal': a == b, 'transformersGguf': a, 'llamapro': b})
out['tokenizer'] = rows

with torch.no_grad():
    model_gguf = AutoModelForCausalLM.from_pretrained(gguf_dir, gguf_file=gguf_name, dtype=torch.float32)
    model_ours = AutoModelForCausalLM.from_pretrained(ours, dtype=torch.float32)
    mine = load_file(os.path.join(ours, 'model.safetensors'))
    worst, unequal, missing = 0.0, [], []
    for name, value in model_gguf.state_dict().items():
        if name not in mine:
            missing.append(name)
            continue
        diff = (value.float() - mine[name].float()).abs().max().item()
        worst = max(worst, diff)
        if diff != 0:
            unequal.append(name)
    out['weights'] = {'tensors': len(mine), 'maxAbsDiff': worst, 'unequal': unequal, 'notInLlamapro': missing}
    ids = tok_ours.apply_chat_template([{'role': 'user', 'content': 'What is the capital of France?'}], add_generation_prompt=True)
    if isinstance(ids, dict) or hasattr(ids, 'input_ids'):
        ids = ids['input_ids']
    x = torch.tensor([ids])
    a = model_gguf(x).logits[0]
    b = model_ours(x).logits[0]
    out['logits'] = {'positions': len(ids), 'maxAbsDiff': (a - b).abs().max().item(), 'maxAbs': a.abs().max().item(),
                     'argmaxEqual': bool((a.argmax(-1) == b.argmax(-1)).all()), 'nextToken': tok_ours.decode([int(b[-1].argmax())])}
    out['ids'] = ids
    out['transformersLogitsLast'] = b[-1].tolist()
json.dump(out, sys.stdout)
