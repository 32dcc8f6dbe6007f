// Float32 building blocks for the fused CPU kernels (fused_ops.cc, causal_attention.cc).
#pragma once
#include <cstdint>
#include <cstring>
#if defined(__SSE__) || defined(__x86_64__)
#include <xmmintrin.h>
#endif

namespace llamapro {

// exp(x) in float32 without a call, so that the loops using it vectorize: Cephes' expf (x = n ln2 + r, |r| <= ln2/2,
// e^r by its degree-7 polynomial, 2^n from the exponent bits; within 1 ulp of exp over [-87, 88]). Inputs are
// clamped to that range, where e^x is a normal float: SiLU needs only 1 / (1 + e^-x), which is 0 or 1 to float
// precision out there, and a softmax term below e^-87 of its row's largest is nothing beside it. Written as a macro
// so that each instruction set gets its own inlined copy (GCC does not inline a default-target function into an
// AVX2 one): see LLAMAPRO_SWIGLU_KERNELS in fused_ops.cc.
// The polynomial is laid out by hand, to read as one expression.
// clang-format off
#define LLAMAPRO_CLAMPED_EXPF(result, input)                                                                       \
  do {                                                                                                             \
    float x_ = (input);                                                                                            \
    x_ = x_ < -87.f ? -87.f : x_;                                                                                  \
    x_ = x_ > 88.f ? 88.f : x_;                                                                                    \
    /* round(x / ln2) by the 1.5 * 2^23 trick: nearbyint would not vectorize without SSE4.1 */                     \
    const float n_ = (x_ * 1.44269504088896341f + 12582912.f) - 12582912.f;                                        \
    float r_ = x_ - n_ * 0.693359375f;                                                                             \
    r_ = r_ - n_ * -2.12194440e-4f;                                                                                \
    const float p_ = (((((1.9875691500e-4f * r_ + 1.3981999507e-3f) * r_ + 8.3334519073e-3f) * r_ +                \
                       4.1665795894e-2f) * r_ + 1.6666665459e-1f) * r_ + 5.0000001201e-1f) * (r_ * r_) + r_ + 1.f; \
    const int32_t bits_ = (static_cast<int32_t>(n_) + 127) << 23;                                                  \
    float scale_;                                                                                                  \
    std::memcpy(&scale_, &bits_, sizeof(scale_));                                                                  \
    (result) = p_ * scale_;                                                                                        \
  } while (0)
// clang-format on

// Loops using LLAMAPRO_CLAMPED_EXPF run with denormals flushed to zero (inputs and results), and the caller's
// floating-point mode restored after: as GCC vectorizes the clamp, lanes compute intermediates that are denormal,
// and each costs a microcode assist — the AVX2 SwiGLU loop ran 10x slower without this (2.5 against 0.25 ms for
// 411 k elements). What changes is below 1.2e-38 in magnitude, where a sigmoid is 0 or 1 to float precision and a
// softmax weight nothing.
class FlushDenormals {
 public:
#if defined(__SSE__) || defined(__x86_64__)
  FlushDenormals() : saved_(_mm_getcsr()) { _mm_setcsr(saved_ | 0x8040); }  // FTZ | DAZ
  ~FlushDenormals() { _mm_setcsr(saved_); }

 private:
  unsigned int saved_;
#endif
};

}  // namespace llamapro
