"""The Python baseline for `llamapro expand`: what LLaMA-Factory's scripts/llama_pro.py does, without
transformers (not needed for the tensor work): load every tensor of the checkpoint into memory, build the
expanded state dict (clones, and zeros for o_proj/down_proj of the new blocks), save it in shards with an index.

usage: python llama_pro_baseline.py MODEL_DIR OUTPUT_DIR NUM_EXPAND [--shard-size BYTES]
"""
import argparse
import json
import os
import shutil

import torch
from safetensors.torch import load_file, save_file


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("model_dir")
    parser.add_argument("output_dir")
    parser.add_argument("num_expand", type=int)
    parser.add_argument("--shard-size", type=int, default=5_000_000_000)
    args = parser.parse_args()

    with open(os.path.join(args.model_dir, "config.json")) as f:
        config = json.load(f)
    num_layers = config["num_hidden_layers"]
    if num_layers % args.num_expand != 0:
        raise ValueError(f"`num_layers` {num_layers} should be divisible by `num_expand` {args.num_expand}.")
    split = num_layers // args.num_expand

    index_path = os.path.join(args.model_dir, "model.safetensors.index.json")
    if os.path.exists(index_path):
        with open(index_path) as f:
            files = sorted(set(json.load(f)["weight_map"].values()))
    else:
        files = ["model.safetensors"]
    state_dict = {}
    for name in files:
        state_dict.update(load_file(os.path.join(args.model_dir, name)))

    output = {}
    layer_count = 0
    for i in range(num_layers):
        prefix = f"model.layers.{i}."
        for key, value in state_dict.items():
            if key.startswith(prefix):
                output[f"model.layers.{layer_count}." + key[len(prefix):]] = value
        layer_count += 1
        if (i + 1) % split == 0:
            for key, value in state_dict.items():
                if key.startswith(prefix):
                    new_key = f"model.layers.{layer_count}." + key[len(prefix):]
                    if "down_proj" in key or "o_proj" in key:
                        output[new_key] = torch.zeros_like(value)
                    else:
                        output[new_key] = torch.clone(value)
            layer_count += 1
    for key, value in state_dict.items():
        if not key.startswith("model.layers."):
            output[key] = value

    # transformers' sharding: fill a shard until the next tensor would pass the limit
    shards, current, size = [], {}, 0
    for key, value in output.items():
        nbytes = value.numel() * value.element_size()
        if current and size + nbytes > args.shard_size:
            shards.append(current)
            current, size = {}, 0
        current[key] = value
        size += nbytes
    shards.append(current)
    os.makedirs(args.output_dir, exist_ok=True)
    weight_map = {}
    for i, shard in enumerate(shards):
        name = "model.safetensors" if len(shards) == 1 else f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        save_file({k: v.contiguous() for k, v in shard.items()}, os.path.join(args.output_dir, name), metadata={"format": "pt"})
        weight_map.update({k: name for k in shard})
    if len(shards) > 1:
        total = sum(v.numel() * v.element_size() for v in output.values())
        with open(os.path.join(args.output_dir, "model.safetensors.index.json"), "w") as f:
            json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2, sort_keys=True)
    config["num_hidden_layers"] = layer_count
    with open(os.path.join(args.output_dir, "config.json"), "w") as f:
        json.dump(config, f, indent=2, sort_keys=True)
    for name in ("tokenizer.json", "tokenizer_config.json", "generation_config.json"):
        if os.path.exists(os.path.join(args.model_dir, name)):
            shutil.copy(os.path.join(args.model_dir, name), args.output_dir)


if __name__ == "__main__":
    main()
