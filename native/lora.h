// LoRA adapters on the model's frozen linear layers, as PEFT's LoraLayer makes them (peft/tuners/lora/layer.py):
// y = W x + b + scale * B(A(dropout(x))), scale = alpha / r (alpha / sqrt(r) with rsLoRA), A [r, in] initialised
// kaiming-uniform with a = sqrt(5) (bound 1 / sqrt(in)), B [out, r] zeros, so a new adapter leaves the output
// unchanged. Which layers get one is lib/'s decision (lib/adapters/lora-targets.ts); which parameters train is
// SetTrainable's, as for freeze tuning.
#pragma once
#include <torch/torch.h>

#include <string>
#include <vector>

#include "llama_modules.h"

namespace llamapro {

struct LoraOptions {
  std::vector<std::string> targets;  // module names: model.layers.3.self_attn.q_proj
  int64_t rank = 8;
  double alpha = 16.0;
  bool use_rslora = false;
  double dropout = 0.0;
  uint64_t seed = 0;  // A's initialisation draws from a CPU generator seeded with this, in target order
};

double LoraScale(int64_t rank, double alpha, bool use_rslora);

// Adds an adapter to each target (a Linear of the decoder layers; not lm_head, whose logits bypass the module).
// Returns the new parameter names, lora_A then lora_B per target. Adapter weights are float32 on the model's
// device. Throws for an unknown target, a non-linear module, or a layer that already has an adapter.
std::vector<std::string> AddLoraAdapters(CausalLMImpl& model, const LoraOptions& options);

// Frees the dropout masks kept for activation checkpointing's recompute (after each training step).
void ClearLoraDropoutMasks(CausalLMImpl& model);

}  // namespace llamapro
