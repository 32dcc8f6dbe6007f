#include "lora.h"

#include <cmath>
#include <stdexcept>

namespace llamapro {

double LoraScale(int64_t rank, double alpha, bool use_rslora) {
  return use_rslora ? alpha / std::sqrt(static_cast<double>(rank)) : alpha / static_cast<double>(rank);
}

std::vector<std::string> AddLoraAdapters(CausalLMImpl& model, const LoraOptions& options) {
  if (options.rank <= 0) throw std::invalid_argument("lora_rank must be positive, got " + std::to_string(options.rank));
  if (!(options.dropout >= 0.0 && options.dropout < 1.0)) {
    throw std::invalid_argument("lora_dropout must be in [0, 1), got " + std::to_string(options.dropout));
  }
  const auto modules = model.named_modules(/*name_prefix=*/"", /*include_self=*/false);
  std::vector<std::shared_ptr<LinearImpl>> linears;
  for (const auto& target : options.targets) {
    if (target == "lm_head") {
      throw std::invalid_argument(
          "LoRA on lm_head is not supported (llamapro computes the logits from the weight directly); train it in full "
          "with additional_target: lm_head");
    }
    const auto* found = modules.find(target);
    if (found == nullptr) {
      throw std::invalid_argument(
          "LoRA target \"" + target +
          "\": the model has no module of that name (names look like model.layers.0.self_attn.q_proj)");
    }
    auto linear = std::dynamic_pointer_cast<LinearImpl>(*found);
    if (!linear) {
      throw std::invalid_argument(
          "LoRA target \"" + target +
          "\" is not a linear layer (LoRA wraps q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj)");
    }
    if (linear->lora_A) throw std::invalid_argument("LoRA target \"" + target + "\" already has an adapter");
    linears.push_back(linear);
  }
  // Initialised on the CPU in float32 from one seeded generator, so the adapter does not depend on the device.
  torch::manual_seed(options.seed);
  const double scale = LoraScale(options.rank, options.alpha, options.use_rslora);
  const auto device = model.model->norm->weight.device();
  std::vector<std::string> names;
  for (size_t i = 0; i < linears.size(); ++i) {
    auto& linear = *linears[i];
    const int64_t out_features = linear.weight.size(0);
    const int64_t in_features = linear.weight.size(1);
    const auto cpu = torch::TensorOptions().dtype(torch::kFloat32);
    auto a = std::make_shared<LinearImpl>(in_features, options.rank, false, cpu);
    auto b = std::make_shared<LinearImpl>(options.rank, out_features, false, cpu);
    {
      torch::NoGradGuard no_grad;
      torch::nn::init::kaiming_uniform_(a->weight, std::sqrt(5.0));
      b->weight.zero_();
    }
    a->to(device);
    b->to(device);
    a->weight.set_requires_grad(false);
    b->weight.set_requires_grad(false);
    linear.lora_A = linear.register_module("lora_A", a);
    linear.lora_B = linear.register_module("lora_B", b);
    linear.lora_scale = scale;
    linear.lora_dropout = options.dropout;
    linear.lora_runtime = model.lora_runtime;
    names.push_back(options.targets[i] + ".lora_A.weight");
    names.push_back(options.targets[i] + ".lora_B.weight");
  }
  return names;
}

void ClearLoraDropoutMasks(CausalLMImpl& model) {
  for (const auto& module : model.modules(/*include_self=*/false)) {
    if (auto linear = std::dynamic_pointer_cast<LinearImpl>(module); linear && linear->dropout_mask.defined()) {
      linear->dropout_mask = torch::Tensor();
      linear->dropout_mask_pass = -1;
    }
  }
}

}  // namespace llamapro
