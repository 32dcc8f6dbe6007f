// AdamW with decoupled weight decay over the trainable parameters only, state addressable by parameter name
// (so checkpoints store it as safetensors), and the gradient-norm clipping of torch.nn.utils.clip_grad_norm_.
// The update is torch.optim.AdamW's formula: fused into one pass for float32 parameters on the CPU, PyTorch's
// single-tensor sequence of operations elsewhere.
#pragma once
#include <torch/torch.h>

#include <map>
#include <string>
#include <unordered_set>
#include <vector>

namespace llamapro {

struct AdamWHyper {
  double lr = 1e-4;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.0;
};

struct NamedTensor {
  std::string name;
  torch::Tensor tensor;
};

class AdamW {
 public:
  // One update of every parameter in `params` that has a gradient, with gradients multiplied by `grad_scale`
  // (the clipping coefficient). Parameters in `no_decay` skip the weight decay (biases and norm weights, as
  // transformers' Trainer does).
  void Step(const std::vector<NamedTensor>& params, const AdamWHyper& hyper, float grad_scale = 1.0f);

  torch::Tensor& ExpAvg(const std::string& name, const torch::Tensor& like);
  torch::Tensor& ExpAvgSq(const std::string& name, const torch::Tensor& like);
  // The state tensor, or nullptr when that parameter has none yet.
  const torch::Tensor* Find(const std::string& name, bool squared) const;
  void Drop(const std::string& name);
  std::vector<std::string> StateNames() const;  // "exp_avg:<param>" and "exp_avg_sq:<param>"
  int64_t StateBytes() const;

  int64_t step = 0;
  std::unordered_set<std::string> no_decay;
  // Per-parameter learning-rate factors (LoRA+: lora_B trains at loraplus_lr_ratio × lr); absent = 1.
  std::map<std::string, double> lr_scale;

 private:
  struct State {
    torch::Tensor exp_avg;
    torch::Tensor exp_avg_sq;
  };
  std::map<std::string, State> states_;
};

struct GradNorms {
  torch::Tensor per_param;  // [P] float32, in the order of the parameters given
  torch::Tensor total;      // scalar float32
};

// One AdamW update of `param` in place, from `grad` (multiplied by grad_scale) and the moments, all of one shape;
// step_size = lr / bias_correction1. Used by AdamW::Step per parameter and by ZeRO-1 per slice of its shard.
void AdamWUpdate(torch::Tensor& param, torch::Tensor& grad, torch::Tensor& exp_avg, torch::Tensor& exp_avg_sq,
                 const AdamWHyper& hyper, double decay, double step_size, double bias_correction2_sqrt,
                 float grad_scale);

// Sum of squares in double: float32 CPU tensors in one vectorised pass (blocks of 1024 in float, added in double),
// others through a float64 copy (ComputeGradNorms and ZeRO-1's sharded norms sum alike).
double SumOfSquares(const torch::Tensor& t);
GradNorms ComputeGradNorms(const std::vector<NamedTensor>& params);
// clip_grad_norm_'s coefficient: min(1, max_norm / (total + 1e-6)), in float32 as PyTorch computes it.
float ClipCoefficient(double total_norm, double max_norm);

}  // namespace llamapro
