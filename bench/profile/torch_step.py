"""The LLaMA-Factory side of bench/profile: one LLaMA-Pro freeze-tuning step as transformers runs it under
LLaMA-Factory's defaults (sdpa attention, gradient checkpointing of the layers that train with use_reentrant=True,
AdamW), on the same model and batch shape, profiled with torch.profiler. Prints the step's median wall and CPU time
and the operators that took the most self CPU time.

usage: python torch_step.py MODEL_DIR [--batch 4] [--seq 67] [--counted 0.34] [--trainable 5,11,...] [--threads 2]
       [--checkpointing on|off] [--steps 4] [--profile]
"""
import argparse
import json
import statistics
import time

import torch
import transformers

p = argparse.ArgumentParser()
p.add_argument("model")
p.add_argument("--batch", type=int, default=4)
p.add_argument("--seq", type=int, default=67)
p.add_argument("--counted", type=float, default=0.34, help="share of positions with a label (the rest -100)")
p.add_argument("--trainable", default="5,11,17,23,29,35")
p.add_argument("--threads", type=int, default=0)
p.add_argument("--checkpointing", default="on")
p.add_argument("--steps", type=int, default=4)
p.add_argument("--profile", action="store_true")
a = p.parse_args()
if a.threads > 0:
    torch.set_num_threads(a.threads)
torch.manual_seed(0)
model = transformers.AutoModelForCausalLM.from_pretrained(a.model, dtype=torch.float32, attn_implementation="sdpa")
trainable = {int(i) for i in a.trainable.split(",")}
for name, param in model.named_parameters():
    param.requires_grad_(any(f".layers.{i}." in name for i in trainable))
if a.checkpointing == "on":
    # LLaMA-Factory's own (model_utils/checkpointing.py): reentrant torch.utils.checkpoint on the layers that hold a
    # trainable parameter; the others run plainly.
    from types import MethodType
    from llamafactory.model.model_utils.checkpointing import _gradient_checkpointing_enable
    model.gradient_checkpointing_enable = MethodType(_gradient_checkpointing_enable, model)
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": True})
model.config.use_cache = False
model.train()
params = [p for p in model.parameters() if p.requires_grad]
opt = torch.optim.AdamW(params, lr=1e-4, fused=True)
vocab = model.config.vocab_size
ids = torch.randint(0, vocab, (a.batch, a.seq))
labels = ids.clone()
labels[:, : int(a.seq * (1 - a.counted))] = -100


def step():
    out = model(input_ids=ids, labels=labels)
    out.loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step()
    opt.zero_grad(set_to_none=True)
    return out.loss.item()


step()  # warm-up
wall, cpu = [], []
for _ in range(a.steps):
    w0, c0 = time.perf_counter(), time.process_time()
    step()
    wall.append((time.perf_counter() - w0) * 1000)
    cpu.append((time.process_time() - c0) * 1000)
print(json.dumps({"torch": torch.__version__, "threads": torch.get_num_threads(), "checkpointing": a.checkpointing,
                  "wall_ms": statistics.median(wall), "cpu_ms": statistics.median(cpu)}))
if a.profile:
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        step()
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25))
