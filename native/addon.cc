// The module's exports: one function per capability, one class per native object.
#include <napi.h>

#include "dequant.h"
#include "kv_cache.h"
#include "memory_stats.h"
#include "model_contract.h"
#include "native_model.h"
#include "process_group.h"
#include "runtime_info.h"

namespace llamapro {
namespace {

Napi::Value DistributedBackends(const Napi::CallbackInfo& info) {
  const auto names = AvailableBackends();
  Napi::Array out = Napi::Array::New(info.Env(), names.size());
  for (size_t i = 0; i < names.size(); ++i) out.Set(static_cast<uint32_t>(i), names[i]);
  return out;
}

}  // namespace

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  InstallCountingCpuAllocator();
  exports.Set("runtimeInfo", Napi::Function::New(env, RuntimeInfo, "runtimeInfo"));
  exports.Set("setThreads", Napi::Function::New(env, SetThreads, "setThreads"));
  exports.Set("setKernelOptions", Napi::Function::New(env, SetKernelOptionsJs, "setKernelOptions"));
  exports.Set("kernelOptions", Napi::Function::New(env, KernelOptionsJs, "kernelOptions"));
  exports.Set("setModelContract", Napi::Function::New(env, SetModelContractJs, "setModelContract"));
  exports.Set("memoryStats", Napi::Function::New(env, MemoryStats, "memoryStats"));
  exports.Set("resetPeakMemory", Napi::Function::New(env, ResetPeakMemory, "resetPeakMemory"));
  exports.Set("convertTensors", Napi::Function::New(env, ConvertTensorsJs, "convertTensors"));
  exports.Set("NativeModel", NativeModel::Define(env));
  exports.Set("NativeProcessGroup", NativeProcessGroup::Define(env));
  exports.Set("distributedBackends", Napi::Function::New(env, DistributedBackends, "distributedBackends"));
  exports.Set("NativeKvCache", NativeKvCache::Define(env));
  return exports;
}

}  // namespace llamapro

static Napi::Object InitLlamapro(Napi::Env env, Napi::Object exports) { return llamapro::Init(env, exports); }

NODE_API_MODULE(llamapro, InitLlamapro)
