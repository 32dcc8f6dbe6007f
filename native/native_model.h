// NativeModel: the JS class over one ModelState. Every method that touches tensor data returns a Promise and
// runs on the libuv pool (async_work.h), creation included (NativeModel.create); the synchronous ones only read
// or set metadata, and answer LLAMAPRO_BUSY rather than wait for a running worker.
#pragma once
#include <napi.h>

#include <memory>

#include "model_state.h"

namespace llamapro {

class NativeModel : public Napi::ObjectWrap<NativeModel> {
 public:
  // Tags every NativeModel object; js::Unwrap<NativeModel> (js_unwrap.h) checks it before unwrapping.
  static const napi_type_tag kTypeTag;
  static constexpr const char* kClassName = "NativeModel";
  static Napi::Function Define(Napi::Env env);
  // Only NativeModel.create (Create) constructs one; `new NativeModel(...)` from JS is a TypeError.
  explicit NativeModel(const Napi::CallbackInfo& info);
  ~NativeModel() override;
  // The model's native state (throws LLAMAPRO_DISPOSED after dispose); kv_cache.cc shares it.
  std::shared_ptr<ModelState> State(Napi::Env env) const;

 private:
  static Napi::Value Create(const Napi::CallbackInfo& info);
  Napi::Value ReportMemory(Napi::Env env, int64_t bytes);

  Napi::Value Parameters(const Napi::CallbackInfo& info);
  Napi::Value Load(const Napi::CallbackInfo& info);
  Napi::Value InitRandom(const Napi::CallbackInfo& info);
  Napi::Value Forward(const Napi::CallbackInfo& info);
  Napi::Value Loss(const Napi::CallbackInfo& info);
  Napi::Value Save(const Napi::CallbackInfo& info);
  Napi::Value SetTrainable(const Napi::CallbackInfo& info);
  Napi::Value ConfigureOptimizer(const Napi::CallbackInfo& info);
  Napi::Value AttachProcessGroup(const Napi::CallbackInfo& info);
  Napi::Value OptimizerState(const Napi::CallbackInfo& info);
  Napi::Value GatherOptimizerState(const Napi::CallbackInfo& info);
  Napi::Value ScatterOptimizerState(const Napi::CallbackInfo& info);
  Napi::Value TrainStep(const Napi::CallbackInfo& info);
  Napi::Value SetGradientCheckpointing(const Napi::CallbackInfo& info);
  Napi::Value InsertBlocks(const Napi::CallbackInfo& info);
  Napi::Value AddLora(const Napi::CallbackInfo& info);
  Napi::Value TensorInfo(const Napi::CallbackInfo& info);
  Napi::Value TensorBytes(const Napi::CallbackInfo& info);
  Napi::Value TensorMaxAbs(const Napi::CallbackInfo& info);
  Napi::Value MaxAbsDifference(const Napi::CallbackInfo& info);
  Napi::Value Gradients(const Napi::CallbackInfo& info);
  Napi::Value Memory(const Napi::CallbackInfo& info);
  Napi::Value Dispose(const Napi::CallbackInfo& info);

  std::shared_ptr<ModelState> state_;
  int64_t reported_bytes_ = 0;
};

Napi::Value MemoryStats(const Napi::CallbackInfo& info);
Napi::Value ResetPeakMemory(const Napi::CallbackInfo& info);

}  // namespace llamapro
