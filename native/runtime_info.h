// What llamapro is running on: LibTorch version and location, CUDA devices, threads, BLAS.
#pragma once
#include <napi.h>

namespace llamapro {
Napi::Value RuntimeInfo(const Napi::CallbackInfo& info);
Napi::Value SetThreads(const Napi::CallbackInfo& info);
}  // namespace llamapro
