"""Independent check of an expanded checkpoint, in Python with the PyPI `safetensors` package.

Re-does the expansion of LLaMA-Factory's scripts/llama_pro.py on the original state dict (copies of the last
layer of every group of n/k layers inserted after it, with every "o_proj"/"down_proj" tensor zero), matching
layer indices at their position (`model.layers.<i>.`) rather than by llama_pro.py's bare ".{i}." substring.
Then reads every file of the expanded checkpoint llamapro wrote and compares it tensor by tensor, dtype and bits.

stdin:  {"original": dir, "expanded": dir, "num_expand": k} or {..., "positions": [..]}
stdout: {"ok": bool, "mismatches": [...], "tensors": n, "files_read": [...], "index_ok": bool}
"""
import json
import os
import sys

import torch
from safetensors import safe_open
from safetensors.torch import load_file


def read_dir(path):
    """All tensors of a model folder, plus the list of files read and whether the index agrees with them."""
    index_path = os.path.join(path, "model.safetensors.index.json")
    if os.path.exists(index_path):
        with open(index_path) as f:
            index = json.load(f)
        files = sorted(set(index["weight_map"].values()))
    else:
        index, files = None, ["model.safetensors"]
    tensors, index_ok = {}, True
    for name in files:
        part = load_file(os.path.join(path, name))
        with safe_open(os.path.join(path, name), framework="pt") as handle:
            if handle.metadata() != {"format": "pt"}:
                index_ok = False
        for key, value in part.items():
            if index is not None and index["weight_map"].get(key) != name:
                index_ok = False
            tensors[key] = value
    if index is not None:
        if set(index["weight_map"]) != set(tensors):
            index_ok = False
        total = sum(t.numel() * t.element_size() for t in tensors.values())
        if index["metadata"].get("total_size") != total:
            index_ok = False
    return tensors, files, index_ok


def expand(state, num_layers, insert_after):
    out, count = {}, 0
    for i in range(num_layers):
        prefix = f"model.layers.{i}."
        for key, value in state.items():
            if key.startswith(prefix):
                out[f"model.layers.{count}." + key[len(prefix):]] = value
        count += 1
        if i in insert_after:
            for key, value in state.items():
                if key.startswith(prefix):
                    new_key = f"model.layers.{count}." + key[len(prefix):]
                    zero = "down_proj" in key or "o_proj" in key
                    out[new_key] = torch.zeros_like(value) if zero else value.clone()
            count += 1
    for key, value in state.items():
        if not key.startswith("model.layers."):
            out[key] = value
    return out


def main():
    request = json.load(sys.stdin)
    original, _, _ = read_dir(request["original"])
    with open(os.path.join(request["original"], "config.json")) as f:
        num_layers = json.load(f)["num_hidden_layers"]
    if "positions" in request:
        insert_after = set(request["positions"])
    else:
        k = request["num_expand"]
        split = num_layers // k
        insert_after = {i for i in range(num_layers) if (i + 1) % split == 0}
    expected = expand(original, num_layers, insert_after)
    actual, files, index_ok = read_dir(request["expanded"])
    mismatches = []
    for key in sorted(set(expected) | set(actual)):
        if key not in actual:
            mismatches.append(f"missing {key}")
        elif key not in expected:
            mismatches.append(f"unexpected {key}")
        elif expected[key].dtype != actual[key].dtype or expected[key].shape != actual[key].shape:
            mismatches.append(f"{key}: {actual[key].dtype} {list(actual[key].shape)} != {expected[key].dtype} {list(expected[key].shape)}")
        elif not torch.equal(expected[key].view(torch.uint8) if expected[key].dtype == torch.bfloat16 else expected[key],
                             actual[key].view(torch.uint8) if actual[key].dtype == torch.bfloat16 else actual[key]):
            mismatches.append(f"{key}: values differ")
    print(json.dumps({"ok": not mismatches and index_ok, "mismatches": mismatches, "tensors": len(actual),
                      "files_read": files, "index_ok": index_ok}))


if __name__ == "__main__":
    main()
