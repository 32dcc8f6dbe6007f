"""Logits of transformers' LlamaForCausalLM (or Mistral/Qwen2 via AutoModelForCausalLM) for a model folder, on a
device: the reference for llamapro's CUDA forward on the GPU machine, where transformers is installed.

stdin: {"model": dir, "ids": [[...]], "device": "cuda", "dtype": "float32"}   stdout: {"logits": [flat], "shape": [...]}
"""
import json
import sys

import torch
from transformers import AutoModelForCausalLM

req = json.load(sys.stdin)
dtype = getattr(torch, req.get("dtype", "float32"))
model = AutoModelForCausalLM.from_pretrained(req["model"], torch_dtype=dtype, attn_implementation="eager").to(req.get("device", "cuda"))
with torch.no_grad():
    logits = model(torch.tensor(req["ids"], device=req.get("device", "cuda"))).logits.float().cpu()
print(json.dumps({"shape": list(logits.shape), "logits": logits.flatten().tolist()}))
