#include "adamw.h"

#include <algorithm>
#include <cmath>
#include <system_error>
#include <thread>

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

namespace {

// One pass over float32 parameters, gradients and moments instead of the eight tensor operations of the
// reference loop: the update is memory-bound, and on a CPU the separate passes cost more than the matmuls of a
// frozen layer. Same formula, evaluated element by element in float.
// Splits [0, n) over the machine's cores: the update is memory-bound, so it gains from every core even when
// LibTorch's intra-op pool is kept at one thread for the matmuls (which OpenBLAS threads itself).
template <typename Fn>
void ParallelChunks(int64_t n, const Fn& fn) {
  const int64_t cores = std::max(1u, std::thread::hardware_concurrency());
  const int64_t parts = std::min<int64_t>(cores, std::max<int64_t>(1, n >> 18));
  if (parts <= 1) return fn(0, n);
  std::vector<std::thread> threads;
  const int64_t chunk = (n + parts - 1) / parts;
  int64_t p = 1;
  try {
    for (; p < parts; ++p) threads.emplace_back(fn, p * chunk, std::min(n, (p + 1) * chunk));
  } catch (const std::system_error&) {
    // No thread to be had (a process or container limit): the chunks not handed out run here, in this thread.
    for (; p < parts; ++p) fn(p * chunk, std::min(n, (p + 1) * chunk));
  }
  fn(0, std::min(n, chunk));
  for (auto& t : threads) t.join();
}

void FusedAdamWFloat(float* param, const float* grad, float* exp_avg, float* exp_avg_sq, int64_t n,
                     const AdamWHyper& hyper, double decay, double step_size, double bias_correction2_sqrt,
                     float grad_scale) {
  const float keep = static_cast<float>(1.0 - hyper.lr * decay);
  const float w1 = static_cast<float>(1.0 - hyper.beta1);
  const float b2 = static_cast<float>(hyper.beta2);
  const float w2 = static_cast<float>(1.0 - hyper.beta2);
  const float inv_bc2 = static_cast<float>(1.0 / bias_correction2_sqrt);
  const float eps = static_cast<float>(hyper.eps);
  const float step = static_cast<float>(step_size);
  ParallelChunks(n, [=](int64_t begin, int64_t end) {
    // Distinct tensors: telling the compiler so lets it vectorise the loop.
    float* __restrict p = param;
    const float* __restrict gr = grad;
    float* __restrict ma = exp_avg;
    float* __restrict va = exp_avg_sq;
    for (int64_t i = begin; i < end; ++i) {
      const float g = gr[i] * grad_scale;
      const float m = ma[i] + w1 * (g - ma[i]);
      const float v = va[i] * b2 + w2 * (g * g);
      ma[i] = m;
      va[i] = v;
      p[i] = p[i] * keep - step * (m / (std::sqrt(v) * inv_bc2 + eps));
    }
  });
}

bool Fusable(const torch::Tensor& param, const torch::Tensor& grad, const torch::Tensor& a, const torch::Tensor& b) {
  for (const auto* t : {&param, &grad, &a, &b}) {
    if (!t->device().is_cpu() || t->scalar_type() != torch::kFloat32 || !t->is_contiguous()) return false;
  }
  return true;
}

}  // namespace

void AdamW::Step(const std::vector<NamedTensor>& params, const AdamWHyper& hyper, float grad_scale) {
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
    auto& exp_avg = ExpAvg(name, param);
    auto& exp_avg_sq = ExpAvgSq(name, param);
    auto param_ref = param;
    auto grad_ref = grad;
    const auto scaled = lr_scale.find(name);
    if (scaled != lr_scale.end()) {
      AdamWHyper group = hyper;
      group.lr *= scaled->second;
      AdamWUpdate(param_ref, grad_ref, exp_avg, exp_avg_sq, group, decay, group.lr / bias_correction1,
                  bias_correction2_sqrt, grad_scale);
      continue;
    }
    AdamWUpdate(param_ref, grad_ref, exp_avg, exp_avg_sq, hyper, decay, step_size, bias_correction2_sqrt, grad_scale);
  }
}

void AdamWUpdate(torch::Tensor& param, torch::Tensor& grad, torch::Tensor& exp_avg, torch::Tensor& exp_avg_sq,
                 const AdamWHyper& hyper, double decay, double step_size, double bias_correction2_sqrt,
                 float grad_scale) {
  if (Fusable(param, grad, exp_avg, exp_avg_sq)) {
    FusedAdamWFloat(param.data_ptr<float>(), grad.data_ptr<float>(), exp_avg.data_ptr<float>(),
                    exp_avg_sq.data_ptr<float>(), param.numel(), hyper, decay, step_size, bias_correction2_sqrt,
                    grad_scale);
    return;
  }
  // torch.optim.AdamW's single-tensor update (GPU, half-precision master weights)
  if (grad_scale != 1.0f) grad.mul_(grad_scale);
  if (decay != 0.0) param.mul_(1.0 - hyper.lr * decay);
  exp_avg.lerp_(grad, 1.0 - hyper.beta1);
  exp_avg_sq.mul_(hyper.beta2).addcmul_(grad, grad, 1.0 - hyper.beta2);
  const auto denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(hyper.eps);
  param.addcdiv_(exp_avg, denom, -step_size);
}

double SumOfSquares(const torch::Tensor& t) {
  if (t.numel() == 0) return 0.0;
  if (t.device().is_cpu() && t.scalar_type() == torch::kFloat32 && t.is_contiguous()) {
    // Float sums over blocks of 1024 (vectorised), blocks added in double (accurate for any length).
    const float* __restrict g = t.data_ptr<float>();
    const int64_t n = t.numel();
    double sum = 0.0;
    for (int64_t start = 0; start < n; start += 1024) {
      const int64_t end = std::min<int64_t>(n, start + 1024);
      float block = 0.f;
      for (int64_t k = start; k < end; ++k) block += g[k] * g[k];
      sum += block;
    }
    return sum;
  }
  return t.to(torch::kFloat64).square().sum().item<double>();
}

GradNorms ComputeGradNorms(const std::vector<NamedTensor>& params) {
  torch::NoGradGuard no_grad;
  // Float32 gradients on the CPU are summed in one plain loop each (double accumulation): for small models the
  // dispatches of a norm per parameter cost more than the arithmetic.
  std::vector<double> cpu_norms(params.size(), -1.0);
  std::vector<torch::Tensor> norms(params.size());
  bool all_cpu = true;
  for (size_t i = 0; i < params.size(); ++i) {
    const auto& grad = params[i].tensor.grad();
    if (!grad.defined()) {
      cpu_norms[i] = 0.0;
    } else if (grad.device().is_cpu() && grad.scalar_type() == torch::kFloat32 && grad.is_contiguous()) {
      cpu_norms[i] = std::sqrt(SumOfSquares(grad));
    } else {
      norms[i] = at::linalg_vector_norm(grad, 2).to(torch::kFloat32);
      all_cpu = false;
    }
  }
  GradNorms out;
  if (all_cpu) {
    double total = 0.0;
    for (const double v : cpu_norms) total += v * v;
    out.per_param = torch::tensor(std::vector<float>(cpu_norms.begin(), cpu_norms.end()), torch::kFloat32);
    out.total = torch::tensor(static_cast<float>(std::sqrt(total)), torch::kFloat32);
    return out;
  }
  const auto device = params.empty() ? torch::Device(torch::kCPU) : params[0].tensor.device();
  for (size_t i = 0; i < params.size(); ++i) {
    if (!norms[i].defined()) norms[i] = torch::tensor(static_cast<float>(cpu_norms[i]), torch::kFloat32).to(device);
  }
  out.per_param = norms.empty() ? torch::zeros({0}, torch::kFloat32) : torch::stack(norms);
  out.total = norms.empty() ? torch::zeros({}, torch::kFloat32) : at::linalg_vector_norm(out.per_param, 2);
  return out;
}

float ClipCoefficient(double total_norm, double max_norm) {
  if (max_norm <= 0) return 1.0f;
  return std::min(1.0f, static_cast<float>(max_norm) / (static_cast<float>(total_norm) + 1e-6f));
}

}  // namespace llamapro
