// One source tree for LibTorch 1.13 (Debian, CI) and 2.x (the GPU machine): version differences live here.
#pragma once
#include <torch/torch.h>
#include <torch/version.h>

#if TORCH_VERSION_MAJOR >= 2
#define LLAMAPRO_HAVE_SDPA 1
#else
#define LLAMAPRO_HAVE_SDPA 0
#endif

// LibTorch 2.5 can do grouped-query attention inside scaled_dot_product_attention (enable_gqa); before that the
// K and V heads have to be repeated. The argument lists differ (scale came in 2.1, enable_gqa in 2.5), so calls
// go through ScaledDotProductAttention, which uses only the arguments its version has.
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 5)
#define LLAMAPRO_SDPA_HAS_GQA 1
#else
#define LLAMAPRO_SDPA_HAS_GQA 0
#endif

#if LLAMAPRO_HAVE_SDPA
namespace llamapro {
// q [B, H, T, D]; k and v [B, H_kv, T, D]. An undefined mask means plain causal attention.
inline torch::Tensor ScaledDotProductAttention(const torch::Tensor& q, torch::Tensor k, torch::Tensor v,
                                               const torch::Tensor& mask) {
  const int64_t groups = q.size(1) / k.size(1);
  const bool causal = !mask.defined();
#if LLAMAPRO_SDPA_HAS_GQA
  if (causal) return at::scaled_dot_product_attention(q, k, v, {}, 0.0, true, c10::nullopt, groups > 1);
  return at::scaled_dot_product_attention(q, k, v, mask, 0.0, false, c10::nullopt, groups > 1);
#else
  if (groups > 1) {
    k = k.repeat_interleave(groups, 1);
    v = v.repeat_interleave(groups, 1);
  }
  if (causal) return at::scaled_dot_product_attention(q, k, v, {}, 0.0, true);
  return at::scaled_dot_product_attention(q, k, v, mask, 0.0, false);
#endif
}
}  // namespace llamapro
#endif
