// Fused forms of the decoder's element-wise work for float32 tensors on the CPU: each is one autograd node with
// one pass over memory forward and one backward, where the composite forms take six to eight operations each way.
// On a small model the dispatch of every extra operation costs more than its arithmetic; on a large one the extra
// passes over memory do. Other devices and dtypes use the composite forms (transformers' own sequence of ops).
#pragma once
#include <torch/torch.h>

namespace llamapro {

// weight * (x * rsqrt(mean(x^2) + eps)), statistics in float32, as transformers' LlamaRMSNorm.
torch::Tensor RmsNorm(const torch::Tensor& x, const torch::Tensor& weight, double eps);

// x * cos + rotate_half(x) * sin for x [B, H, T, D] (any strides), with `sin_signed` = cat(-sin, sin) halves as
// AttentionContext holds it. Returns a contiguous [B, H, T, D] tensor.
torch::Tensor Rotary(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin_signed);

// silu(gate) * up, the SwiGLU MLP's activation.
torch::Tensor SwiGlu(const torch::Tensor& gate, const torch::Tensor& up);

// Whether the fused forms apply to tensors like these.
bool FusedCpuFloat(const torch::Tensor& a, const torch::Tensor& b);

}  // namespace llamapro
