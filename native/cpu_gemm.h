// The model's projections (x W^T + b: every q/k/v/o, gate/up/down, LoRA and output-head product) on the CPU.
//
// Debian's LibTorch runs float32 matrix products through OpenBLAS, which at the shapes of a training step
// (a few hundred rows against 576-1536 columns) reaches 150-270 GFLOP/s on two AVX-512 cores, and at a handful of
// rows (generation) wakes its threads for microseconds of work: a 576x1536 product of one row takes ~200 us.
// The same LibTorch links oneDNN (libdnnl.so.2) for its convolutions, and oneDNN's sgemm runs those shapes at
// 260-330 GFLOP/s and one row in ~30 us (bench/results/llamafactory-speed-profile.md, section 6). So where the
// process has oneDNN's C API (the symbol dnnl_sgemm, found at run time: nothing to build or ship), float32 CPU
// projections call it, forward and backward, as one autograd node. LibTorch builds that hide it (pip's, with
// MKL) keep at::linear.
//
// While oneDNN runs them, OpenBLAS (left with attention's batched products in LibTorch 1.x) runs on the calling
// thread and oneDNN gets the threads OpenBLAS had: the two pools would spin against each other (cpu_gemm.cc).
// The kernel option gemm 'blas' (LLAMAPRO_GEMM=blas) keeps at::linear and OpenBLAS's threads; 'onednn' (the
// default) uses oneDNN where usable. It is read per call, so that one process can time both
// (bench/profile/ab-env.mjs).
#pragma once
#include <torch/torch.h>

#include <functional>
#include <string>

namespace llamapro {

// x [..., in] times weight [out, in]^T plus bias [out] (may be undefined), with autograd.
torch::Tensor Project(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias);

// "onednn" when Project would use oneDNN's sgemm for float32 CPU tensors now, else "blas" (runtime info), and the
// threads its products run on (0: unknown, the BLAS library's own setting).
std::string CpuGemmBackend();
int CpuGemmThreads();

// For kernels built on oneDNN's products (causal_attention.cc): whether Project uses oneDNN now; a row-major
// C = alpha op(A) op(B) + beta C with leading dimensions (only when OneDnnProducts()); and fn over [0, n) in
// chunks on the products' threads, where each product called inside fn runs on the calling thread alone.
bool OneDnnProducts();
void OneDnnSgemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
                 const float* b, int64_t ldb, float beta, float* c, int64_t ldc);
void ParallelOnGemmThreads(int64_t n, const std::function<void(int64_t, int64_t)>& fn);

}  // namespace llamapro
