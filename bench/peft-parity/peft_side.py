"""PEFT's half of bench/peft-parity (run.sh), in the opt-in venv (torch 2.x, transformers, peft).

  create WORK   PEFT loads llamapro's adapter (PeftModel.from_pretrained) -> WORK/peft-logits-of-llamapro-adapter.json;
                PEFT creates its own adapter on the expanded blocks with random nonzero B (init_lora_weights=False,
                use_rslora, modules_to_save) -> WORK/peft-adapter, its logits, and merge_and_unload() -> WORK/peft-merged
  compare WORK  every comparison -> JSON on stdout
"""
import json
import math
import os
import sys

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM


def logits_of(model, ids):
    with torch.no_grad():
        return model(input_ids=torch.tensor(ids)).logits.float().reshape(-1).tolist()


def base_model(work):
    return AutoModelForCausalLM.from_pretrained(os.path.join(work, "pro"), torch_dtype=torch.float32).eval()


def create(work):
    ids = json.load(open(os.path.join(work, "ids.json")))
    peft_model = PeftModel.from_pretrained(base_model(work), os.path.join(work, "llamapro-adapter")).eval()
    json.dump(logits_of(peft_model, ids), open(os.path.join(work, "peft-logits-of-llamapro-adapter.json"), "w"))

    torch.manual_seed(5)
    num_layers = 6
    stride = num_layers // 2
    targets = [f"model.layers.{i}.{m}" for i in range(stride - 1, num_layers, stride)
               for m in ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")]
    config = LoraConfig(task_type="CAUSAL_LM", r=4, lora_alpha=6, target_modules=targets, init_lora_weights=False, use_rslora=True, modules_to_save=["norm"])
    model = get_peft_model(base_model(work), config)
    with torch.no_grad():  # modules_to_save copies start equal to the base: move them so that the test can tell
        for name, p in model.named_parameters():
            if "modules_to_save" in name:
                p.add_(torch.randn_like(p) * 0.05)
    model.eval()
    model.save_pretrained(os.path.join(work, "peft-adapter"))
    json.dump(logits_of(model, ids), open(os.path.join(work, "peft-logits.json"), "w"))
    model.merge_and_unload().save_pretrained(os.path.join(work, "peft-merged"), safe_serialization=True)


def max_diff(a, b):
    return max(abs(x - y) for x, y in zip(a, b))


def read_dir(path):
    out = {}
    for name in os.listdir(path):
        if name.endswith(".safetensors"):
            out.update(load_file(os.path.join(path, name)))
    return out


def compare(work):
    load = lambda name: json.load(open(os.path.join(work, name)))
    peft_merged, ours_merged = read_dir(os.path.join(work, "peft-merged")), read_dir(os.path.join(work, "llamapro-merged"))
    missing = sorted(set(peft_merged) ^ set(ours_merged))
    merge_diff = max((peft_merged[k].double() - ours_merged[k].double()).abs().max().item() for k in peft_merged if k in ours_merged)
    return {
        "llamapro_adapter_in_peft_max_logit_diff": max_diff(load("llamapro-logits.json"), load("peft-logits-of-llamapro-adapter.json")),
        "peft_adapter_in_llamapro_max_logit_diff": max_diff(load("peft-logits.json"), load("llamapro-logits-of-peft-adapter.json")),
        "merge_max_weight_diff": merge_diff,
        # How far each adapter moves the logits from the base model's: the checks above are not trivially small.
        "llamapro_adapter_effect_on_logits": max_diff(load("llamapro-logits.json"), load("base-logits.json")),
        "peft_adapter_effect_on_logits": max_diff(load("peft-logits.json"), load("base-logits.json")),
        "merge_tensor_names_differing": missing,
        "peft_adapter_tensors": sorted(load_file(os.path.join(work, "peft-adapter", "adapter_model.safetensors")).keys())[:4],
    }


if __name__ == "__main__":
    if sys.argv[1] == "create":
        create(sys.argv[2])
    else:
        print(json.dumps(compare(sys.argv[2]), indent=2))
