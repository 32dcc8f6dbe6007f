#include "adamw.h"

#include <cmath>

namespace llamapro {

torch::Tensor& AdamW::ExpAvg(const std::string& name, const torch::Tensor& like) {
  auto& state = states_[name];
  if (!state.exp_avg.defined()) state.exp_avg = torch::zeros_like(like, torch::MemoryFormat::Preserve);
  return state.exp_avg;
}

torch::Tensor& AdamW::ExpAvgSq(const std::string& name, const torch::Tensor& like) {
  auto& state = states_[name];
  if (!state.exp_avg_sq.defined()) state.exp_avg_sq = torch::zeros_like(like, torch::MemoryFormat::Preserve);
  return state.exp_avg_sq;
}

const torch::Tensor* AdamW::Find(const std::string& name, bool squared) const {
  const auto found = states_.find(name);
  if (found == states_.end()) return nullptr;
  const auto& tensor = squared ? found->second.exp_avg_sq : found->second.exp_avg;
  return tensor.defined() ? &tensor : nullptr;
}

void AdamW::Drop(const std::string& name) { states_.erase(name); }

void AdamW::Clear() {
  states_.clear();
  step = 0;
}

std::vector<std::string> AdamW::StateNames() const {
  std::vector<std::string> names;
  for (const auto& [name, state] : states_) {
    if (state.exp_avg.defined()) names.push_back("exp_avg:" + name);
    if (state.exp_avg_sq.defined()) names.push_back("exp_avg_sq:" + name);
  }
  return names;
}

int64_t AdamW::StateBytes() const {
  int64_t bytes = 0;
  for (const auto& [name, state] : states_) {
    for (const auto* t : {&state.exp_avg, &state.exp_avg_sq}) {
      if (t->defined()) bytes += t->numel() * static_cast<int64_t>(t->element_size());
    }
  }
  return bytes;
}

void AdamW::Step(const std::vector<NamedTensor>& params, const AdamWHyper& hyper) {
  torch::NoGradGuard no_grad;
  ++step;
  const double bias_correction1 = 1.0 - std::pow(hyper.beta1, static_cast<double>(step));
  const double bias_correction2 = 1.0 - std::pow(hyper.beta2, static_cast<double>(step));
  const double step_size = hyper.lr / bias_correction1;
  const double bias_correction2_sqrt = std::sqrt(bias_correction2);
  for (const auto& [name, param] : params) {
    const auto& grad = param.grad();
    if (!grad.defined()) continue;
    const double decay = no_decay.count(name) ? 0.0 : hyper.weight_decay;
    if (decay != 0.0) param.mul_(1.0 - hyper.lr * decay);
    auto& exp_avg = ExpAvg(name, param);
    auto& exp_avg_sq = ExpAvgSq(name, param);
    exp_avg.lerp_(grad, 1.0 - hyper.beta1);
    exp_avg_sq.mul_(hyper.beta2).addcmul_(grad, grad, 1.0 - hyper.beta2);
    const auto denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(hyper.eps);
    param.addcdiv_(exp_avg, denom, -step_size);
  }
}

GradNorms ComputeGradNorms(const std::vector<NamedTensor>& params) {
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> norms;
  norms.reserve(params.size());
  for (const auto& [name, param] : params) {
    const auto& grad = param.grad();
    norms.push_back(grad.defined() ? at::linalg_vector_norm(grad, 2).to(torch::kFloat32)
                                   : torch::zeros({}, param.options().dtype(torch::kFloat32)));
  }
  GradNorms out;
  if (norms.empty()) {
    out.per_param = torch::zeros({0}, torch::kFloat32);
    out.total = torch::zeros({}, torch::kFloat32);
    return out;
  }
  out.per_param = torch::stack(norms);
  out.total = at::linalg_vector_norm(out.per_param, 2);
  return out;
}

void ClipGradients(const std::vector<NamedTensor>& params, const torch::Tensor& total, double max_norm) {
  torch::NoGradGuard no_grad;
  const auto coef = torch::clamp(max_norm / (total + 1e-6), c10::nullopt, 1.0);
  for (const auto& [name, param] : params) {
    auto grad = param.grad();
    if (grad.defined()) grad.mul_(coef.to(grad.dtype()));
  }
}

}  // namespace llamapro
