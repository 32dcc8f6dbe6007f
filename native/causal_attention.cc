#include "causal_attention.h"

#include <ATen/record_function.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "cpu_gemm.h"
#include "kernel_options.h"
#include "vector_math.h"

namespace llamapro {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::tensor_list;

// Query t sees keys [FirstKey(t), t].
inline int64_t FirstKey(int64_t t, int64_t window) { return window > 0 && t >= window ? t - window + 1 : 0; }

// One row of scores in place: softmax over [lo, hi), zero elsewhere in [0, n). The exponentials get their own loop
// (it vectorizes; the sum after it would not let it).
#define LLAMAPRO_SOFTMAX_ROW(suffix)                                                  \
  void SoftmaxRow##suffix(float* __restrict row, int64_t lo, int64_t hi, int64_t n) { \
    float top = row[lo];                                                              \
    for (int64_t j = lo + 1; j < hi; ++j) top = row[j] > top ? row[j] : top;          \
    for (int64_t j = lo; j < hi; ++j) LLAMAPRO_CLAMPED_EXPF(row[j], row[j] - top);    \
    float sum = 0.f;                                                                  \
    for (int64_t j = lo; j < hi; ++j) sum += row[j];                                  \
    const float inverse = 1.f / sum;                                                  \
    for (int64_t j = lo; j < hi; ++j) row[j] *= inverse;                              \
    for (int64_t j = 0; j < lo; ++j) row[j] = 0.f;                                    \
    for (int64_t j = hi; j < n; ++j) row[j] = 0.f;                                    \
  }

LLAMAPRO_SOFTMAX_ROW(Baseline)
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#pragma GCC push_options
#pragma GCC target("avx2,fma")
LLAMAPRO_SOFTMAX_ROW(Avx2)
#pragma GCC pop_options
const bool kSoftmaxAvx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
#define SoftmaxRowAvx2 SoftmaxRowBaseline
const bool kSoftmaxAvx2 = false;
#endif

struct Dims {
  int64_t batch, heads, kv_heads, seq, head_dim, groups;
  explicit Dims(const torch::Tensor& q, const torch::Tensor& k)
      : batch(q.size(0)),
        heads(q.size(1)),
        kv_heads(k.size(1)),
        seq(q.size(2)),
        head_dim(q.size(3)),
        groups(q.size(1) / k.size(1)) {}
};

// Forward for contiguous q [B, H, T, D], k and v [B, H_kv, T, D]: fills probs [B, H, T, T] and out [B, T, H * D].
void Forward(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v, int64_t window, float scale,
             torch::Tensor& probs, torch::Tensor& out) {
  RECORD_USER_SCOPE("llamapro::causal_attention");  // a row of LLAMAPRO_PROFILE_OPS
  const Dims d(q, k);
  const int64_t T = d.seq, D = d.head_dim, HD = d.heads * d.head_dim;
  const float* qp = q.data_ptr<float>();
  const float* kp = k.data_ptr<float>();
  const float* vp = v.data_ptr<float>();
  float* pp = probs.data_ptr<float>();
  float* op = out.data_ptr<float>();
  ParallelOnGemmThreads(d.batch * d.kv_heads, [&](int64_t begin, int64_t end) {
    FlushDenormals flush;
    const auto softmax_row = kSoftmaxAvx2 ? SoftmaxRowAvx2 : SoftmaxRowBaseline;
    for (int64_t task = begin; task < end; ++task) {  // task = b * H_kv + kv
      const int64_t b = task / d.kv_heads, kv = task % d.kv_heads;
      const float* keys = kp + task * T * D;
      const float* values = vp + task * T * D;
      for (int64_t g = 0; g < d.groups; ++g) {
        const int64_t h = kv * d.groups + g;
        float* scores = pp + (b * d.heads + h) * T * T;
        OneDnnSgemm(false, true, T, T, D, scale, qp + (b * d.heads + h) * T * D, D, keys, D, 0.f, scores, T);
        for (int64_t t = 0; t < T; ++t) softmax_row(scores + t * T, FirstKey(t, window), t + 1, T);
        // Row t of head h lands at out[b, t, h * D]: leading dimension H * D.
        OneDnnSgemm(false, false, T, D, T, 1.f, scores, T, values, D, 0.f, op + (b * T * d.heads + h) * D, HD);
      }
    }
  });
}

class CausalAttentionFunction : public torch::autograd::Function<CausalAttentionFunction> {
 public:
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& q, const torch::Tensor& k,
                               const torch::Tensor& v, int64_t window, double scale) {
    const Dims d(q, k);
    auto probs = torch::empty({d.batch, d.heads, d.seq, d.seq}, q.options());
    auto out = torch::empty({d.batch, d.seq, d.heads * d.head_dim}, q.options());
    Forward(q, k, v, window, static_cast<float>(scale), probs, out);
    ctx->save_for_backward({q, k, v, probs});
    ctx->saved_data["window"] = window;
    ctx->saved_data["scale"] = scale;
    return out;
  }

  static tensor_list backward(AutogradContext* ctx, tensor_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto& q = saved[0];
    const auto& k = saved[1];
    const auto& v = saved[2];
    const auto& probs = saved[3];
    const int64_t window = ctx->saved_data["window"].toInt();
    const float scale = static_cast<float>(ctx->saved_data["scale"].toDouble());
    const auto dout = grads[0].contiguous();  // [B, T, H * D]
    TORCH_CHECK(dout.sizes() == torch::IntArrayRef({q.size(0), q.size(2), q.size(1) * q.size(3)}),
                "attention: gradient of shape ", dout.sizes(), " for an output of [", q.size(0), ", ", q.size(2), ", ",
                q.size(1) * q.size(3), "]");
    const Dims d(q, k);
    const int64_t T = d.seq, D = d.head_dim, HD = d.heads * d.head_dim;
    auto dq = torch::empty_like(q);
    auto dk = torch::empty_like(k);
    auto dv = torch::empty_like(v);
    const float* qp = q.data_ptr<float>();
    const float* kp = k.data_ptr<float>();
    const float* vp = v.data_ptr<float>();
    const float* pp = probs.data_ptr<float>();
    const float* gp = dout.data_ptr<float>();
    float* dqp = dq.data_ptr<float>();
    float* dkp = dk.data_ptr<float>();
    float* dvp = dv.data_ptr<float>();
    ParallelOnGemmThreads(d.batch * d.kv_heads, [&](int64_t begin, int64_t end) {
      std::vector<float> ds(static_cast<size_t>(T * T));
      for (int64_t task = begin; task < end; ++task) {
        const int64_t b = task / d.kv_heads, kv = task % d.kv_heads;
        const float* keys = kp + task * T * D;
        const float* values = vp + task * T * D;
        float* dkeys = dkp + task * T * D;
        float* dvalues = dvp + task * T * D;
        for (int64_t g = 0; g < d.groups; ++g) {
          const int64_t h = kv * d.groups + g;
          const float* p = pp + (b * d.heads + h) * T * T;
          const float* queries = qp + (b * d.heads + h) * T * D;
          const float* dout_h = gp + (b * T * d.heads + h) * D;  // leading dimension H * D
          const float accumulate = g == 0 ? 0.f : 1.f;           // the group's query heads share dK and dV
          OneDnnSgemm(true, false, T, D, T, 1.f, p, T, dout_h, HD, accumulate, dvalues, D);  // dV += P^T dO
          OneDnnSgemm(false, true, T, T, D, 1.f, dout_h, HD, values, D, 0.f, ds.data(), T);  // dP = dO V^T
          for (int64_t t = 0; t < T; ++t) {  // dS = P (dP - rowsum(P dP)) scale
            const float* p_row = p + t * T;
            float* row = ds.data() + t * T;
            float dot = 0.f;
            for (int64_t j = FirstKey(t, window); j <= t; ++j) dot += p_row[j] * row[j];
            for (int64_t j = 0; j < T; ++j) row[j] = p_row[j] * (row[j] - dot) * scale;
          }
          // dQ = dS K, then dK += dS^T Q
          OneDnnSgemm(false, false, T, D, T, 1.f, ds.data(), T, keys, D, 0.f, dqp + (b * d.heads + h) * T * D, D);
          OneDnnSgemm(true, false, T, D, T, 1.f, ds.data(), T, queries, D, accumulate, dkeys, D);
        }
      }
    });
    return {dq, dk, dv, torch::Tensor(), torch::Tensor()};
  }
};

}  // namespace

bool CausalAttentionApplies(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v) {
  for (const auto* t : {&q, &k, &v}) {
    if (!t->defined() || !t->device().is_cpu() || t->scalar_type() != torch::kFloat32 || t->dim() != 4 ||
        t->numel() == 0) {
      return false;
    }
  }
  if (k.sizes() != v.sizes() || q.size(0) != k.size(0) || q.size(2) != k.size(2) || q.size(3) != k.size(3)) {
    return false;
  }
  if (k.size(1) == 0 || q.size(1) % k.size(1) != 0) return false;
  return CurrentKernelOptions().fused_attention && OneDnnProducts();
}

torch::Tensor CausalAttention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v, int64_t window,
                              double scale) {
  // The composite form checks its own shapes; here a wrong one would index out of bounds, so check again.
  TORCH_CHECK(CausalAttentionApplies(q, k, v), "attention: q ", q.sizes(), ", k ", k.sizes(), ", v ", v.sizes(),
              " are not float32 CPU [B, H, T, D] / [B, H_kv, T, D] with H a multiple of H_kv");
  TORCH_CHECK(window >= 0, "attention: sliding window ", window, " (0 = none)");
  const auto qc = q.contiguous();
  const auto kc = k.contiguous();
  const auto vc = v.contiguous();
  if (torch::GradMode::is_enabled() && (q.requires_grad() || k.requires_grad() || v.requires_grad())) {
    return CausalAttentionFunction::apply(qc, kc, vc, window, scale);
  }
  const Dims d(qc, kc);
  auto probs = torch::empty({d.batch, d.heads, d.seq, d.seq}, qc.options());
  auto out = torch::empty({d.batch, d.seq, d.heads * d.head_dim}, qc.options());
  Forward(qc, kc, vc, window, static_cast<float>(scale), probs, out);
  return out;
}

}  // namespace llamapro
