#include "runtime_info.h"

#include <ATen/Parallel.h>
#include <ATen/Version.h>
#include <dlfcn.h>
#include <torch/cuda.h>
#include <torch/torch.h>
#include <torch/version.h>

#include <fstream>
#include <string>

#include "async_work.h"

#ifdef LLAMAPRO_WITH_CUDA
#include <cuda_runtime_api.h>
#endif

namespace llamapro {
namespace {

// The shared object that defines a LibTorch symbol: the LibTorch actually loaded, whatever the headers said.
std::string LoadedTorchLibrary() {
  Dl_info dl{};
  if (dladdr(reinterpret_cast<void*>(&at::show_config), &dl) != 0 && dl.dli_fname != nullptr) return dl.dli_fname;
  return "";
}

// The BLAS library mapped into this process. Debian's LibTorch links libblas.so.3, which the alternatives
// system points at OpenBLAS or at the reference BLAS (about 25x slower for training).
std::string MappedBlasLibrary() {
  std::ifstream maps("/proc/self/maps");
  std::string line;
  while (std::getline(maps, line)) {
    const auto slash = line.find('/');
    if (slash == std::string::npos) continue;
    const std::string path = line.substr(slash);
    if (path.find("blas") != std::string::npos || path.find("libmkl") != std::string::npos) return path;
  }
  return "";
}

std::string BuildConfigValue(const std::string& config, const std::string& key) {
  const auto at = config.find(key + "=");
  if (at == std::string::npos) return "";
  const auto start = at + key.size() + 1;
  const auto end = config.find_first_of(",\n", start);
  return config.substr(start, end == std::string::npos ? std::string::npos : end - start);
}

}  // namespace

Napi::Value RuntimeInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object out = Napi::Object::New(env);
  out.Set("torchVersion", TORCH_VERSION);
  out.Set("torchLibrary", LoadedTorchLibrary());
  out.Set("torchCmakeDir", LLAMAPRO_TORCH_CMAKE_DIR);

  Napi::Object cuda = Napi::Object::New(env);
#ifdef LLAMAPRO_WITH_CUDA
  cuda.Set("compiled", true);
#else
  cuda.Set("compiled", false);
#endif
  const bool cuda_available = torch::cuda::is_available();
  cuda.Set("available", cuda_available);
  Napi::Array devices = Napi::Array::New(env);
#ifdef LLAMAPRO_WITH_CUDA
  if (cuda_available) {
    const int64_t count = static_cast<int64_t>(torch::cuda::device_count());
    for (int64_t i = 0; i < count; ++i) {
      cudaDeviceProp props{};
      if (cudaGetDeviceProperties(&props, static_cast<int>(i)) != cudaSuccess) continue;
      Napi::Object device = Napi::Object::New(env);
      device.Set("index", static_cast<double>(i));
      device.Set("name", std::string(props.name));
      device.Set("totalMemory", static_cast<double>(props.totalGlobalMem));
      device.Set("computeCapability", std::to_string(props.major) + "." + std::to_string(props.minor));
      devices.Set(static_cast<uint32_t>(i), device);
    }
  }
#endif
  cuda.Set("devices", devices);
  out.Set("cuda", cuda);

  ApplyThreadSettings();
  Napi::Object threads = Napi::Object::New(env);
  threads.Set("intraOp", at::get_num_threads());
  threads.Set("interOp", at::get_num_interop_threads());
  threads.Set("configured", IntraOpThreads());
  using GetThreadsFn = int (*)();
  auto openblas_threads = reinterpret_cast<GetThreadsFn>(dlsym(RTLD_DEFAULT, "openblas_get_num_threads"));
  if (openblas_threads != nullptr) threads.Set("blas", openblas_threads());
  out.Set("threads", threads);

  const std::string build_config = at::show_config();
  Napi::Object blas = Napi::Object::New(env);
  const std::string mapped = MappedBlasLibrary();
  using GetConfigFn = char* (*)();
  auto openblas_config = reinterpret_cast<GetConfigFn>(dlsym(RTLD_DEFAULT, "openblas_get_config"));
  std::string name;
  if (openblas_config != nullptr) {
    name = "OpenBLAS";
    blas.Set("config", std::string(openblas_config()));
  } else if (mapped.find("mkl") != std::string::npos || BuildConfigValue(build_config, "BLAS_INFO") == "mkl") {
    name = "MKL";
  } else if (mapped.find("/blas/libblas") != std::string::npos) {
    name = "reference BLAS";
  } else {
    name = BuildConfigValue(build_config, "BLAS_INFO");
  }
  blas.Set("name", name);
  blas.Set("library", mapped);
  blas.Set("buildSetting", BuildConfigValue(build_config, "BLAS_INFO"));
  out.Set("blas", blas);
  out.Set("parallelInfo", at::get_parallel_info());
  out.Set("buildConfig", build_config);
  return out;
}

Napi::Value SetThreads(const Napi::CallbackInfo& info) {
  if (info.Length() < 1 || !info[0].IsNumber()) ThrowJs(info.Env(), "setThreads(n) needs a number", "LLAMAPRO_ARG");
  const int threads = info[0].As<Napi::Number>().Int32Value();
  if (threads < 0 || threads > 1024) ThrowJs(info.Env(), "threads must be between 0 and 1024", "LLAMAPRO_ARG");
  SetIntraOpThreads(threads);
  return info.Env().Undefined();
}

}  // namespace llamapro
