"""Independent reference for LoRA adapters in PEFT's format, with torch and the PyPI safetensors package only
(PEFT itself needs a newer torch than Debian's 1.13; bench/peft-parity.py checks against PEFT in the opt-in venv).

The adapter math is PEFT's LoraLayer written out by hand: y = W x + b + scale * (x A^T) B^T, scale = alpha / r
(alpha / sqrt(r) with use_rslora), applied unmerged to bench/reference/llama_ref.py's independent LLaMA.

stdin: {"cmd": "make_adapter", "base": dir, "out": dir, "targets": [module], "r": int, "alpha": num,
        "use_rslora": bool, "seed": int, "modules_to_save": [module]?, "full": [param]?}
         -> writes a PEFT adapter folder with random nonzero A and B (as PEFT with init_lora_weights=False)
       {"cmd": "logits", "base": dir, "adapter": dir, "ids": [[...]]} -> {"shape": [...], "logits": [...]}
       {"cmd": "check_merge", "base": dir, "adapter": dir, "merged": dir}
         -> {"max_merged_diff": x, "max_other_diff": y, "tensors": n}: the merged folder against W + scale B A
"""
import json
import math
import os
import sys

import torch
from safetensors.torch import load_file, save_file

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "bench", "reference"))
import llama_ref  # noqa: E402

PREFIX = "base_model.model."


def read_model(path):
    index = os.path.join(path, "model.safetensors.index.json")
    files = sorted(set(json.load(open(index))["weight_map"].values())) if os.path.exists(index) else ["model.safetensors"]
    out = {}
    for name in files:
        out.update(load_file(os.path.join(path, name)))
    return out


def read_adapter(path):
    config = json.load(open(os.path.join(path, "adapter_config.json")))
    tensors = load_file(os.path.join(path, "adapter_model.safetensors"))
    r = config["r"]
    scale = config["lora_alpha"] / (math.sqrt(r) if config.get("use_rslora") else r)
    loras, full = {}, {}
    for key, value in tensors.items():
        assert key.startswith(PREFIX), key
        name = key[len(PREFIX):]
        if name.endswith(".lora_A.weight"):
            loras.setdefault(name[: -len(".lora_A.weight")], {})["A"] = value
        elif name.endswith(".lora_B.weight"):
            loras.setdefault(name[: -len(".lora_B.weight")], {})["B"] = value
        else:
            full[name] = value
    return config, scale, loras, full


def make_adapter(req):
    base = read_model(req["base"])
    g = torch.Generator().manual_seed(req.get("seed", 0))
    r = req["r"]
    tensors = {}
    for target in req["targets"]:
        out_features, in_features = base[target + ".weight"].shape
        tensors[PREFIX + target + ".lora_A.weight"] = (torch.rand(r, in_features, generator=g) - 0.5) * (2 / math.sqrt(in_features))
        tensors[PREFIX + target + ".lora_B.weight"] = (torch.rand(out_features, r, generator=g) - 0.5) * 0.2
    for name in req.get("full", []):
        t = base[name].float()
        tensors[PREFIX + name] = t + (torch.rand(t.shape, generator=g) - 0.5) * 0.1
    os.makedirs(req["out"], exist_ok=True)
    save_file(tensors, os.path.join(req["out"], "adapter_model.safetensors"), metadata={"format": "pt"})
    config = {
        "peft_type": "LORA", "task_type": "CAUSAL_LM", "r": r, "lora_alpha": req["alpha"], "lora_dropout": 0.0,
        "target_modules": sorted({t.split(".")[-1] for t in req["targets"]}), "use_rslora": req.get("use_rslora", False),
        "modules_to_save": req.get("modules_to_save"), "bias": "none", "fan_in_fan_out": False, "use_dora": False,
        "base_model_name_or_path": req["base"], "inference_mode": True, "init_lora_weights": False,
    }
    json.dump(config, open(os.path.join(req["out"], "adapter_config.json"), "w"), indent=2)
    return {"ok": True}


def logits(req):
    model = llama_ref.load_model(req["base"])
    model.eval()
    _, scale, loras, full = read_adapter(req["adapter"])
    modules = dict(model.named_modules())
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, value in full.items():
            params[name].copy_(value)
    for name, ab in loras.items():
        modules[name]._lora = (ab["A"].float(), ab["B"].float(), scale)
    plain = llama_ref._linear

    def linear_with_lora(x, layer):
        y = plain(x, layer)
        lora = getattr(layer, "_lora", None)
        if lora is None:
            return y
        a, b, s = lora
        return y + (x @ a.t().to(x.dtype)) @ b.t().to(x.dtype) * s

    llama_ref._linear = linear_with_lora
    ids = torch.tensor(req["ids"], dtype=torch.long)
    with torch.no_grad():
        out, _ = model(ids, ids)
    return {"shape": list(out.shape), "logits": out.float().reshape(-1).tolist()}


def check_merge(req):
    base = read_model(req["base"])
    merged = read_model(req["merged"])
    _, scale, loras, full = read_adapter(req["adapter"])
    assert set(base) == set(merged), "merged folder has other tensor names"
    max_merged, max_other = 0.0, 0.0
    for name, w in base.items():
        m = merged[name]
        assert m.dtype == w.dtype and m.shape == w.shape, name
        module = name[: -len(".weight")] if name.endswith(".weight") else None
        if module in loras:
            expected = w.double() + (loras[module]["B"].double() @ loras[module]["A"].double()) * scale
            max_merged = max(max_merged, (m.double() - expected).abs().max().item())
        elif name in full:
            max_merged = max(max_merged, (m.double() - full[name].to(w.dtype).double()).abs().max().item())
        else:
            max_other = max(max_other, (m.double() - w.double()).abs().max().item())
    return {"max_merged_diff": max_merged, "max_other_diff": max_other, "tensors": len(base)}


if __name__ == "__main__":
    request = json.load(sys.stdin)
    print(json.dumps({"make_adapter": make_adapter, "logits": logits, "check_merge": check_merge}[request["cmd"]](request)))
