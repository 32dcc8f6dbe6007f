#include "fused_ops.h"

#include <cmath>
#include <cstdint>
#include <cstring>

#include "vector_math.h"

namespace llamapro {

using torch::autograd::AutogradContext;
using torch::autograd::tensor_list;

bool FusedCpuFloat(const torch::Tensor& a, const torch::Tensor& b) {
  return a.device().is_cpu() && b.device().is_cpu() && a.scalar_type() == torch::kFloat32 &&
         b.scalar_type() == torch::kFloat32;
}

namespace {

// RMSNorm: y = w * n, n = x * r, r = 1 / sqrt(mean(x^2) + eps) per row. Saves x and r (one float per row);
// n is recomputed in backward. Gradients: dw = sum_rows(dy * n), dx = r * (g - n * mean(g * n)) with g = dy * w.
class RmsNormFunction : public torch::autograd::Function<RmsNormFunction> {
 public:
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& input, const torch::Tensor& weight,
                               double eps) {
    const auto x = input.contiguous();
    const auto w = weight.contiguous();
    const int64_t hidden = x.size(-1);
    const int64_t rows = x.numel() / hidden;
    auto out = torch::empty_like(x);
    auto rstd = torch::empty({rows}, x.options());
    const float* xp = x.data_ptr<float>();
    const float* wp = w.data_ptr<float>();
    float* op = out.data_ptr<float>();
    float* rp = rstd.data_ptr<float>();
    at::parallel_for(0, rows, 16, [&](int64_t begin, int64_t end) {
      for (int64_t row = begin; row < end; ++row) {
        const float* xr = xp + row * hidden;
        float* yr = op + row * hidden;
        float sum = 0.f;
        for (int64_t i = 0; i < hidden; ++i) sum += xr[i] * xr[i];
        const float r = 1.f / std::sqrt(sum / static_cast<float>(hidden) + static_cast<float>(eps));
        rp[row] = r;
        for (int64_t i = 0; i < hidden; ++i) yr[i] = wp[i] * (xr[i] * r);
      }
    });
    ctx->save_for_backward({x, w, rstd});
    return out;
  }

  static tensor_list backward(AutogradContext* ctx, tensor_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto& x = saved[0];
    const auto& w = saved[1];
    const auto& rstd = saved[2];
    const auto dy = grads[0].contiguous();
    const int64_t hidden = x.size(-1);
    const int64_t rows = x.numel() / hidden;
    const bool want_x = ctx->needs_input_grad(0);
    const bool want_w = ctx->needs_input_grad(1);
    torch::Tensor dx = want_x ? torch::empty_like(x) : torch::Tensor();
    torch::Tensor dw = want_w ? torch::zeros_like(w) : torch::Tensor();
    const float* xp = x.data_ptr<float>();
    const float* wp = w.data_ptr<float>();
    const float* rp = rstd.data_ptr<float>();
    const float* gp = dy.data_ptr<float>();
    float* dxp = want_x ? dx.data_ptr<float>() : nullptr;
    float* dwp = want_w ? dw.data_ptr<float>() : nullptr;
    const float inv_hidden = 1.f / static_cast<float>(hidden);
    for (int64_t row = 0; row < rows; ++row) {
      const float* xr = xp + row * hidden;
      const float* dyr = gp + row * hidden;
      const float r = rp[row];
      if (want_w) {
        for (int64_t i = 0; i < hidden; ++i) dwp[i] += dyr[i] * (xr[i] * r);
      }
      if (want_x) {
        float dot = 0.f;
        for (int64_t i = 0; i < hidden; ++i) dot += dyr[i] * wp[i] * (xr[i] * r);
        const float mean = dot * inv_hidden;
        float* dxr = dxp + row * hidden;
        for (int64_t i = 0; i < hidden; ++i) dxr[i] = r * (dyr[i] * wp[i] - (xr[i] * r) * mean);
      }
    }
    return {dx, dw, torch::Tensor()};
  }
};

// Rotary embedding: out[j] = x[j] * cos[j] + x[(j + D/2) % D] * sin[j] over the head dimension (sin carries the
// sign of rotate_half). Backward: dx[j] = dy[j] * cos[j] + dy[k] * sin[k] with k = (j + D/2) % D.
class RotaryFunction : public torch::autograd::Function<RotaryFunction> {
 public:
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x, const torch::Tensor& cos,
                               const torch::Tensor& sin) {
    auto out = torch::empty(x.sizes(), x.options().memory_format(torch::MemoryFormat::Contiguous));
    Apply(x, cos.contiguous(), sin.contiguous(), out, /*transpose=*/false);
    ctx->save_for_backward({cos, sin});
    return out;
  }

  static tensor_list backward(AutogradContext* ctx, tensor_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto& dy = grads[0];
    auto dx = torch::empty(dy.sizes(), dy.options().memory_format(torch::MemoryFormat::Contiguous));
    Apply(dy, saved[0].contiguous(), saved[1].contiguous(), dx, /*transpose=*/true);
    return {dx, torch::Tensor(), torch::Tensor()};
  }

 private:
  static void Apply(const torch::Tensor& in, const torch::Tensor& cos, const torch::Tensor& sin, torch::Tensor& out,
                    bool transpose) {
    const int64_t B = in.size(0), H = in.size(1), T = in.size(2), D = in.size(3);
    const int64_t half = D / 2;
    const int64_t sb = in.stride(0), sh = in.stride(1), st = in.stride(2), sd = in.stride(3);
    const float* ip = in.data_ptr<float>();
    const float* cp = cos.data_ptr<float>();
    const float* snp = sin.data_ptr<float>();
    float* op = out.data_ptr<float>();
    at::parallel_for(0, B * H, 1, [&](int64_t begin, int64_t end) {
      for (int64_t bh = begin; bh < end; ++bh) {
        const int64_t b = bh / H, h = bh % H;
        for (int64_t t = 0; t < T; ++t) {
          const float* src = ip + b * sb + h * sh + t * st;
          const float* c = cp + t * D;
          const float* s = snp + t * D;
          float* dst = op + ((bh * T) + t) * D;
          for (int64_t j = 0; j < D; ++j) {
            const int64_t k = j < half ? j + half : j - half;
            dst[j] = transpose ? src[j * sd] * c[j] + src[k * sd] * s[k] : src[j * sd] * c[j] + src[k * sd] * s[j];
          }
        }
      }
    });
  }
};

// h = g * s * u with s = sigmoid(g); backward: dh/du = g * s, dh/dg = u * s * (1 + g * (1 - s)).
#define LLAMAPRO_SWIGLU_KERNELS(suffix)                                                                              \
  void SwiGluForward##suffix(const float* __restrict g, const float* __restrict u, float* __restrict h, int64_t n) { \
    for (int64_t i = 0; i < n; ++i) {                                                                                \
      float e;                                                                                                       \
      LLAMAPRO_CLAMPED_EXPF(e, -g[i]);                                                                               \
      h[i] = g[i] * (1.f / (1.f + e)) * u[i];                                                                        \
    }                                                                                                                \
  }                                                                                                                  \
  void SwiGluBackward##suffix(const float* __restrict g, const float* __restrict u, const float* __restrict dh,      \
                              float* __restrict dg, float* __restrict du, int64_t n) {                               \
    for (int64_t i = 0; i < n; ++i) {                                                                                \
      float e;                                                                                                       \
      LLAMAPRO_CLAMPED_EXPF(e, -g[i]);                                                                               \
      const float sig = 1.f / (1.f + e);                                                                             \
      du[i] = dh[i] * (g[i] * sig);                                                                                  \
      dg[i] = dh[i] * u[i] * sig * (1.f + g[i] * (1.f - sig));                                                       \
    }                                                                                                                \
  }

LLAMAPRO_SWIGLU_KERNELS(Baseline)
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#pragma GCC push_options
#pragma GCC target("avx2,fma")
LLAMAPRO_SWIGLU_KERNELS(Avx2)
#pragma GCC pop_options
const bool kHaveAvx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
#define SwiGluForwardAvx2 SwiGluForwardBaseline
#define SwiGluBackwardAvx2 SwiGluBackwardBaseline
const bool kHaveAvx2 = false;
#endif

void SwiGluForward(const float* g, const float* u, float* h, int64_t n) {
  FlushDenormals flush;
  (kHaveAvx2 ? SwiGluForwardAvx2 : SwiGluForwardBaseline)(g, u, h, n);
}
void SwiGluBackward(const float* g, const float* u, const float* dh, float* dg, float* du, int64_t n) {
  FlushDenormals flush;
  (kHaveAvx2 ? SwiGluBackwardAvx2 : SwiGluBackwardBaseline)(g, u, dh, dg, du, n);
}

// The MLP's silu(gate) * up as one node: one pass forward, one backward (where the composite form runs silu, mul,
// and in backward mul, mul, silu_backward), and it saves gate and up, not also silu(gate).
class SwiGluFunction : public torch::autograd::Function<SwiGluFunction> {
 public:
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& gate, const torch::Tensor& up) {
    const auto g = gate.contiguous();
    const auto u = up.contiguous();
    auto h = torch::empty_like(g);
    const float* gp = g.data_ptr<float>();
    const float* up_ = u.data_ptr<float>();
    float* hp = h.data_ptr<float>();
    at::parallel_for(0, g.numel(), kGrain, [&](int64_t begin, int64_t end) {
      SwiGluForward(gp + begin, up_ + begin, hp + begin, end - begin);
    });
    ctx->save_for_backward({g, u});
    return h;
  }

  static tensor_list backward(AutogradContext* ctx, tensor_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto& g = saved[0];
    const auto& u = saved[1];
    const auto dh = grads[0].contiguous();
    auto dg = torch::empty_like(g);
    auto du = torch::empty_like(u);
    const float* gp = g.data_ptr<float>();
    const float* up_ = u.data_ptr<float>();
    const float* dhp = dh.data_ptr<float>();
    float* dgp = dg.data_ptr<float>();
    float* dup = du.data_ptr<float>();
    at::parallel_for(0, g.numel(), kGrain, [&](int64_t begin, int64_t end) {
      SwiGluBackward(gp + begin, up_ + begin, dhp + begin, dgp + begin, dup + begin, end - begin);
    });
    return {ctx->needs_input_grad(0) ? dg : torch::Tensor(), ctx->needs_input_grad(1) ? du : torch::Tensor()};
  }

 private:
  static constexpr int64_t kGrain = 32768;
};

}  // namespace

torch::Tensor RmsNorm(const torch::Tensor& x, const torch::Tensor& weight, double eps) {
  if (FusedCpuFloat(x, weight)) return RmsNormFunction::apply(x, weight, eps);
  const auto dtype = x.scalar_type();
  const auto x32 = x.scalar_type() == torch::kFloat32 ? x : x.to(torch::kFloat32);
  const auto normed = x32 * at::rsqrt(x32.pow(2).mean(-1, /*keepdim=*/true) + eps);
  return (weight.scalar_type() == dtype ? weight : weight.to(dtype)) *
         (normed.scalar_type() == dtype ? normed : normed.to(dtype));
}

torch::Tensor Rotary(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin_signed) {
  if (FusedCpuFloat(x, cos) && x.dim() == 4) return RotaryFunction::apply(x, cos, sin_signed);
  return x * cos + at::roll(x, {x.size(-1) / 2}, {-1}) * sin_signed;
}

torch::Tensor SwiGlu(const torch::Tensor& gate, const torch::Tensor& up) {
  if (FusedCpuFloat(gate, up) && gate.sizes() == up.sizes()) return SwiGluFunction::apply(gate, up);
  return at::silu(gate) * up;
}

}  // namespace llamapro
