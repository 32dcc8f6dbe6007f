"""The PyTorch-eager baseline of `llamapro bench`: the same model, batch and freeze strategy as one training step
in Python (forward, loss, backward, clip, AdamW), timed the same way. Uses llama_ref.py's model; with
"transformers": true and transformers installed (the GPU machine), also transformers' LlamaForCausalLM.

stdin:  {"config": {...config.json...}, "dtype": "float32", "device": "cpu", "threads": 1, "batch": 4, "seq": 128,
         "steps": 10, "warmup": 3, "seed": 0, "transformers": false,
         "strategies": [{"name": "full", "trainable": ["model.embed_tokens.weight", ...]}, ...]}
stdout: {"torch": "1.13.0", "results": [{"name": ..., "implementation": "pytorch-eager" | "transformers",
         "ms": [...], "peakMemoryBytes": int | null}]}
"""
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from llama_ref import make_train_step, parse_dtype, random_model  # noqa: E402


def synchronize(device):
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def time_steps(step, ids, labels, warmup, steps, device):
    for _ in range(warmup):
        step(ids, labels)
    synchronize(device)
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step(ids, labels)  # returns loss.item(): the step has finished on the device
        synchronize(device)
        times.append((time.perf_counter() - start) * 1000)
    peak = torch.cuda.max_memory_allocated() if device.startswith("cuda") else None
    return times, peak


def transformers_step(config, dtype, device, trainable, seed):
    """transformers' LlamaForCausalLM with the same parameters trainable (float32 master copies, AdamW, clipping)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    model = LlamaForCausalLM(LlamaConfig(**{k: v for k, v in config.items() if k != "architectures"})).to(device=device, dtype=dtype)
    names = set(trainable)
    params = []
    for name, p in model.named_parameters():
        train = name in names
        if train and p.dtype != torch.float32:
            p.data = p.data.float()
        p.requires_grad_(train)
        if train:
            params.append(p)
    optimizer = torch.optim.AdamW(params, lr=1e-4, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)

    def step(ids, labels):
        ids_t = torch.as_tensor(ids, dtype=torch.long, device=device)
        labels_t = torch.as_tensor(labels, dtype=torch.long, device=device)
        with torch.autocast(device_type="cuda", dtype=dtype, enabled=device.startswith("cuda") and dtype != torch.float32):
            loss = model(input_ids=ids_t, labels=labels_t).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return float(loss.item())

    return model, step


def main():
    req = json.load(sys.stdin)
    torch.set_num_threads(int(req.get("threads") or torch.get_num_threads()))
    dtype = parse_dtype(req.get("dtype", "float32"))
    device = req.get("device", "cpu")
    generator = torch.Generator().manual_seed(int(req.get("seed", 0)))
    vocab = int(req["config"]["vocab_size"])
    ids = torch.randint(0, vocab, (int(req["batch"]), int(req["seq"])), generator=generator)
    results = []
    for strategy in req["strategies"]:
        model = random_model(req["config"], seed=int(req.get("seed", 0)), dtype=dtype, device=device)
        step = make_train_step(model, strategy["trainable"], lr=1e-4, weight_decay=0.0, max_grad_norm=1.0)
        times, peak = time_steps(step, ids, ids, int(req["warmup"]), int(req["steps"]), device)
        results.append({"name": strategy["name"], "implementation": "pytorch-eager", "ms": times, "peakMemoryBytes": peak})
        del model, step
        if device.startswith("cuda"):
            torch.cuda.empty_cache()
        if req.get("transformers"):
            try:
                model, step = transformers_step(req["config"], dtype, device, strategy["trainable"], int(req.get("seed", 0)))
            except ImportError:
                continue
            times, peak = time_steps(step, ids, ids, int(req["warmup"]), int(req["steps"]), device)
            results.append({"name": strategy["name"], "implementation": "transformers", "ms": times, "peakMemoryBytes": peak})
            del model, step
            if device.startswith("cuda"):
                torch.cuda.empty_cache()
    print(json.dumps({"torch": torch.__version__, "results": results}))


if __name__ == "__main__":
    main()
