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
#include "cpu_gemm.h"
#include "js_convert.h"
#include "kernel_options.h"

// Device names and sizes come from the CUDA runtime where its headers are there; pip's CUDA 13 wheels lack the
// crt/ headers cuda_runtime_api.h needs, so without them the same facts come from the driver API (libcuda.so.1,
// which every CUDA machine has), looked up at run time through a few stable C entry points.
#ifdef LLAMAPRO_WITH_CUDA
#if __has_include(<cuda_runtime_api.h>)
#include <cuda_runtime_api.h>
#define LLAMAPRO_CUDA_RUNTIME_HEADERS 1
#else
#define LLAMAPRO_CUDA_RUNTIME_HEADERS 0
#endif
#endif

namespace llamapro {
namespace {

// The shared object that defines a LibTorch symbol: the LibTorch actually loaded, whatever the headers said.
std::string LoadedTorchLibrary() {
  Dl_info dl{};
  if (dladdr(reinterpret_cast<void*>(&at::show_config), &dl) != 0 && dl.dli_fname != nullptr) return dl.dli_fname;
  return "";
}

// The CPU BLAS library mapped into this process. Debian's LibTorch links libblas.so.3, which the alternatives
// system points at OpenBLAS or at the reference BLAS (about 25x slower for training). Matched by the file name's
// start, so that a CUDA LibTorch's libcublas/libcublasLt/libnvblas are not taken for it (pip's torch links MKL
// statically: nothing is mapped, and the name comes from the build configuration).
std::string MappedBlasLibrary() {
  std::ifstream maps("/proc/self/maps");
  std::string line;
  while (std::getline(maps, line)) {
    const auto slash = line.find('/');
    if (slash == std::string::npos) continue;
    const std::string path = line.substr(slash);
    const std::string name = path.substr(path.rfind('/') + 1);
    if (name.rfind("libblas", 0) == 0 || name.rfind("libopenblas", 0) == 0 || name.rfind("libmkl", 0) == 0) return path;
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

struct DeviceFacts {
  std::string name;
  double total_memory = 0;
  int major = 0;
  int minor = 0;
};

#if defined(LLAMAPRO_WITH_CUDA) && !LLAMAPRO_CUDA_RUNTIME_HEADERS
bool CudaDeviceFacts(int index, DeviceFacts* out) {
  static void* driver = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
  if (driver == nullptr) return false;
  using InitFn = int (*)(unsigned);
  using GetFn = int (*)(int*, int);
  using NameFn = int (*)(char*, int, int);
  using MemFn = int (*)(size_t*, int);
  using AttrFn = int (*)(int*, int, int);
  auto init = reinterpret_cast<InitFn>(dlsym(driver, "cuInit"));
  auto get = reinterpret_cast<GetFn>(dlsym(driver, "cuDeviceGet"));
  auto name = reinterpret_cast<NameFn>(dlsym(driver, "cuDeviceGetName"));
  auto mem = reinterpret_cast<MemFn>(dlsym(driver, "cuDeviceTotalMem_v2"));
  auto attr = reinterpret_cast<AttrFn>(dlsym(driver, "cuDeviceGetAttribute"));
  if (!init || !get || !name || !mem || !attr || init(0) != 0) return false;
  int device = 0;
  if (get(&device, index) != 0) return false;
  char buffer[256] = {};
  size_t bytes = 0;
  constexpr int kComputeCapabilityMajor = 75;  // CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR
  constexpr int kComputeCapabilityMinor = 76;
  if (name(buffer, sizeof(buffer) - 1, device) != 0 || mem(&bytes, device) != 0) return false;
  if (attr(&out->major, kComputeCapabilityMajor, device) != 0 ||
      attr(&out->minor, kComputeCapabilityMinor, device) != 0) {
    return false;
  }
  out->name = buffer;
  out->total_memory = static_cast<double>(bytes);
  return true;
}
#elif defined(LLAMAPRO_WITH_CUDA)
bool CudaDeviceFacts(int index, DeviceFacts* out) {
  cudaDeviceProp props{};
  if (cudaGetDeviceProperties(&props, index) != cudaSuccess) return false;
  out->name = props.name;
  out->total_memory = static_cast<double>(props.totalGlobalMem);
  out->major = props.major;
  out->minor = props.minor;
  return true;
}
#endif

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
      DeviceFacts facts;
      if (!CudaDeviceFacts(static_cast<int>(i), &facts)) continue;
      Napi::Object device = Napi::Object::New(env);
      device.Set("index", static_cast<double>(i));
      device.Set("name", facts.name);
      device.Set("totalMemory", facts.total_memory);
      device.Set("computeCapability", std::to_string(facts.major) + "." + std::to_string(facts.minor));
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
  // Which library runs the model's float32 CPU projections (native/cpu_gemm.h): "onednn" or "blas".
  Napi::Object gemm = Napi::Object::New(env);
  gemm.Set("library", CpuGemmBackend());
  gemm.Set("threads", CpuGemmThreads());
  out.Set("cpuGemm", gemm);
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

Napi::Value SetKernelOptionsJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const auto object = js::Object(info.Length() > 0 ? info[0] : env.Undefined(), "kernel options");
  KernelOptions options;
  const std::string gemm = js::String(object.Get("gemm"), "kernel options.gemm");
  if (gemm != "onednn" && gemm != "blas") {
    js::TypeError(env, "kernel options.gemm must be 'onednn' or 'blas', got '" + gemm + "'");
  }
  options.gemm = gemm == "blas" ? GemmChoice::kBlas : GemmChoice::kOneDnn;
  const std::string profile = js::String(object.Get("profileOps"), "kernel options.profileOps");
  if (profile != "off" && profile != "cpu" && profile != "wall") {
    js::TypeError(env, "kernel options.profileOps must be 'off', 'cpu' or 'wall', got '" + profile + "'");
  }
  options.profile_ops = profile == "wall"  ? OpProfileMode::kWall
                        : profile == "cpu" ? OpProfileMode::kThreadCpu
                                           : OpProfileMode::kOff;
  options.fused_attention = js::Bool(object.Get("fusedAttention"), "kernel options.fusedAttention");
  options.row_plan = js::Bool(object.Get("rowPlan"), "kernel options.rowPlan");
  options.cpu_cache = js::Bool(object.Get("cpuCache"), "kernel options.cpuCache");
  SetKernelOptions(options);
  return env.Undefined();
}

Napi::Value KernelOptionsJs(const Napi::CallbackInfo& info) {
  const KernelOptions options = CurrentKernelOptions();
  Napi::Object out = Napi::Object::New(info.Env());
  out.Set("gemm", GemmChoiceName(options.gemm));
  out.Set("fusedAttention", options.fused_attention);
  out.Set("rowPlan", options.row_plan);
  out.Set("cpuCache", options.cpu_cache);
  out.Set("profileOps", OpProfileModeName(options.profile_ops));
  return out;
}

}  // namespace llamapro
