// Causal grouped-query attention (optionally sliding-window) as one autograd node, for LibTorch builds without
// scaled_dot_product_attention (1.x, Debian's) when oneDNN runs the products (cpu_gemm.h).
//
// The composite form there — baddbmm for the scaled, masked scores, softmax, bmm, then a transposing copy for
// o_proj, and in backward bmm, bmm, softmax_backward, bmm, bmm — runs OpenBLAS's batched products on one thread
// (cpu_gemm.cc keeps OpenBLAS at one thread beside oneDNN) and reads the scores four times. Here each (batch,
// KV head) is one task on the products' threads: for each of its query heads, S = scale Q K^T (oneDNN, on the
// task's thread), the masked softmax in place (one vectorized pass), O = P V written straight into the
// [batch, seq, heads, head_dim] layout o_proj reads. P is saved for backward, as the composite form saves the
// softmax output; backward is dV += P^T dO, dP = dO V^T, dS = P (dP - rowsum(P dP)) scale, dQ = dS K, dK += dS^T Q.
//
// The kernel option fusedAttention false (LLAMAPRO_FUSED_ATTENTION=0; read per call) keeps the composite form.
#pragma once
#include <torch/torch.h>

namespace llamapro {

// Whether CausalAttention takes q [B, H, T, D] and k, v [B, H_kv, T, D] now.
bool CausalAttentionApplies(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v);

// softmax(scale q k^T + causal mask) v, key j visible to query i when j <= i and (window == 0 or i - j < window),
// query head h reading KV head h / (H / H_kv) as repeat_kv. Returns [B, T, H * D], contiguous.
torch::Tensor CausalAttention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v, int64_t window,
                              double scale);

}  // namespace llamapro
