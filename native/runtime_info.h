// What llamapro is running on: LibTorch version and location, CUDA devices, threads, BLAS.
#pragma once
#include <napi.h>

namespace llamapro {
Napi::Value RuntimeInfo(const Napi::CallbackInfo& info);
Napi::Value SetThreads(const Napi::CallbackInfo& info);
// setKernelOptions({gemm, fusedAttention, rowPlan, cpuCache, profileOps}) (native/kernel_options.h): every field
// required and checked (a TypeError naming the field and its valid values) before any is set.
// kernelOptions(): the same object back, from what C++ holds.
Napi::Value SetKernelOptionsJs(const Napi::CallbackInfo& info);
Napi::Value KernelOptionsJs(const Napi::CallbackInfo& info);
}  // namespace llamapro
