"""PEFT adapters both tools start the LoRA cases from (adapter_name_or_path), so that random initialisation cannot
differ between them: random nonzero A and B (init_lora_weights=False), made by PEFT itself on models/base-pro.

  adapters/lora-pro   adapters on every linear of the expanded blocks 2 and 5 (what lora_target: all +
                      use_llama_pro + freeze_trainable_layers: 2 selects), r 8, alpha 16
  adapters/lora-all   every linear of every layer, r 4, alpha 8, use_rslora, modules_to_save: norm. Its B keeps
                      nn.Linear's init: scaled by 10 on every layer, the step-1 gradient becomes so ill-conditioned
                      that float32 implementations disagree by ~1e-2 among themselves (PEFT, llamapro and a plain
                      PyTorch reference against a float64 one: 5e-3, 8e-3, 1.2e-2), which is not what this compares
Run by run.sh in the working folder with the LLaMA-Factory venv's python.
"""
import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM

LINEARS = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"]


def make(out, config, seed, b_scale):
    torch.manual_seed(seed)
    base = AutoModelForCausalLM.from_pretrained("models/base-pro", dtype=torch.float32)
    model = get_peft_model(base, config)
    with torch.no_grad():  # B from nn.Linear's init is small: scale it so the adapters matter from step 0
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.mul_(b_scale)
    model.save_pretrained(out)


make("adapters/lora-pro", LoraConfig(task_type="CAUSAL_LM", r=8, lora_alpha=16, target_modules=[f"model.layers.{i}.{m}" for i in (2, 5) for m in LINEARS], init_lora_weights=False), 1, 10)
make("adapters/lora-all", LoraConfig(task_type="CAUSAL_LM", r=4, lora_alpha=8, target_modules=[m.split(".")[1] for m in LINEARS], use_rslora=True, modules_to_save=["norm"], init_lora_weights=False), 2, 1)
