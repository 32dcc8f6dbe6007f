// NativeModel's class surface: the method table, creation off the JS thread (device and dtype checked first),
// construction, disposal and the memory the object reports to V8. The methods themselves live by what they do:
// native_model_training.cc (forward, loss, training steps, optimizer) and native_model_tensors.cc (loading,
// saving, growing and reading the model's tensors).
#include "native_model.h"

#include <torch/cuda.h>
#include <torch/version.h>

#include <optional>

#include "async_work.h"
#include "js_unwrap.h"
#include "js_convert.h"
#include "memory_stats.h"
#include "model_contract.h"
#include "native_model_shared.h"
#include "tensor_io.h"

namespace llamapro {
namespace {

// A device name from JS, parsed on the JS thread: 'cpu', 'cuda' or 'cuda:<n>'. Whether that device exists is asked
// on the worker (OpenDevice): the first CUDA call initialises the driver, which takes seconds on some machines.
struct DeviceRequest {
  std::string name;
  bool cuda = false;
  int64_t index = 0;
};

DeviceRequest ParseDevice(Napi::Env env, const std::string& name) {
  if (name == "cpu") return {name, false, 0};
  if (name == "cuda") return {name, true, 0};
  if (name.rfind("cuda:", 0) == 0) {
    const std::string digits = name.substr(5);
    const bool numeric =
        !digits.empty() && digits.size() <= 4 && digits.find_first_not_of("0123456789") == std::string::npos;
    if (numeric) return {name, true, std::stoll(digits)};
  }
  ThrowJs(env, "device must be 'cpu', 'cuda' or 'cuda:<n>', got '" + name + "'", "LLAMAPRO_ARG");
}

// On the worker: the device, or a CodedError (LLAMAPRO_NO_CUDA) saying why it cannot be used.
torch::Device OpenDevice(const DeviceRequest& request) {
  if (!request.cuda) return torch::Device(torch::kCPU);
  const std::string& name = request.name;
  if (!torch::cuda::is_available()) {
#ifdef LLAMAPRO_WITH_CUDA
    throw CodedError("device '" + name +
                         "': this LibTorch has CUDA, but no GPU is visible (check the driver and CUDA_VISIBLE_DEVICES)",
                     "LLAMAPRO_NO_CUDA");
#else
    throw CodedError(
        "device '" + name + "': the LibTorch llamapro was built against (" + TORCH_VERSION +
            ") has no CUDA. Rebuild against a CUDA LibTorch (LIBTORCH=... npm rebuild llamapro) or use device 'cpu'",
        "LLAMAPRO_NO_CUDA");
#endif
  }
  const int64_t count = static_cast<int64_t>(torch::cuda::device_count());
  if (request.index >= count) {
    throw CodedError("device '" + name + "': there are " + std::to_string(count) + " CUDA devices (cuda:0.." +
                         std::to_string(count - 1) + ")",
                     "LLAMAPRO_NO_CUDA");
  }
  return torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(request.index));
}

}  // namespace

const napi_type_tag NativeModel::kTypeTag = {0x6c6c616d6170726fULL, 0x4e61746976654d6fULL};

namespace {

// What NativeModel.create's worker built, handed to the constructor inside an External that carries this tag. No
// JS code can make such an External, so `new NativeModel(...)` from JS always takes the error path.
const napi_type_tag kCreatedModelTag = {0x6c6c616d6170726fULL, 0x637265617465644dULL};

struct CreatedModel {
  std::shared_ptr<ModelState> state;
  int64_t bytes = 0;
};

// The class object, per environment (a worker thread or an Electron utility process has its own), for create's
// done() to construct the JS object with.
struct NativeModelClass {
  Napi::FunctionReference constructor;
};

}  // namespace

Napi::Function NativeModel::Define(Napi::Env env) {
  Napi::Function cls =
      DefineClass(env, "NativeModel",
                  {
                      StaticMethod("create", &NativeModel::Create),
                      InstanceMethod("parameters", &NativeModel::Parameters),
                      InstanceMethod("load", &NativeModel::Load),
                      InstanceMethod("initRandom", &NativeModel::InitRandom),
                      InstanceMethod("forward", &NativeModel::Forward),
                      InstanceMethod("loss", &NativeModel::Loss),
                      InstanceMethod("save", &NativeModel::Save),
                      InstanceMethod("setTrainable", &NativeModel::SetTrainable),
                      InstanceMethod("configureOptimizer", &NativeModel::ConfigureOptimizer),
                      InstanceMethod("attachProcessGroup", &NativeModel::AttachProcessGroup),
                      InstanceMethod("optimizerState", &NativeModel::OptimizerState),
                      InstanceMethod("gatherOptimizerState", &NativeModel::GatherOptimizerState),
                      InstanceMethod("scatterOptimizerState", &NativeModel::ScatterOptimizerState),
                      InstanceMethod("trainStep", &NativeModel::TrainStep),
                      InstanceMethod("setGradientCheckpointing", &NativeModel::SetGradientCheckpointing),
                      InstanceMethod("insertBlocks", &NativeModel::InsertBlocks),
                      InstanceMethod("addLora", &NativeModel::AddLora),
                      InstanceMethod("tensorInfo", &NativeModel::TensorInfo),
                      InstanceMethod("tensorBytes", &NativeModel::TensorBytes),
                      InstanceMethod("tensorMaxAbs", &NativeModel::TensorMaxAbs),
                      InstanceMethod("maxAbsDifference", &NativeModel::MaxAbsDifference),
                      InstanceMethod("gradients", &NativeModel::Gradients),
                      InstanceMethod("memory", &NativeModel::Memory),
                      InstanceMethod("dispose", &NativeModel::Dispose),
                  });
  // The addon's only instance data (napi_set_instance_data holds one pointer per addon and environment).
  env.SetInstanceData<NativeModelClass>(new NativeModelClass{Napi::Persistent(cls)});
  return cls;
}

// NativeModel.create(spec, { device, dtype, gradientCheckpointing?, checkpointFrozenLayers? }) -> Promise<NativeModel>.
// The arguments are checked here, on the JS thread; CUDA initialisation and the allocation of every parameter run
// on the libuv pool, so an Electron window keeps painting while a large model is created.
Napi::Value NativeModel::Create(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const auto spec = SpecFromJs(js::Object(info[0], "spec"));
  const auto options = js::Object(info[1], "options");
  const auto device = ParseDevice(env, js::String(options.Get("device"), "options.device"));
  c10::ScalarType dtype;
  try {
    dtype = ScalarTypeFromName(js::String(options.Get("dtype"), "options.dtype"));
  } catch (const std::invalid_argument& e) {
    js::TypeError(env, e.what());
  }
  std::optional<bool> checkpointing;
  std::optional<bool> checkpoint_frozen;
  if (!options.Get("gradientCheckpointing").IsUndefined()) {
    checkpointing = js::Bool(options.Get("gradientCheckpointing"), "options.gradientCheckpointing");
  }
  if (!options.Get("checkpointFrozenLayers").IsUndefined()) {
    checkpoint_frozen = js::Bool(options.Get("checkpointFrozenLayers"), "options.checkpointFrozenLayers");
  }
  auto made = std::make_shared<CreatedModel>();
  return RunAsync(
      Napi::Object::New(env), "llamapro.createModel",
      [made, spec, device, dtype, checkpointing, checkpoint_frozen] {
        try {
          made->state = std::make_shared<ModelState>(spec, OpenDevice(device), dtype);
        } catch (const std::bad_alloc&) {
          throw CodedError("out of memory while allocating the model's parameters", "LLAMAPRO_OUT_OF_MEMORY");
        }
        if (checkpointing) made->state->module->gradient_checkpointing = *checkpointing;
        if (checkpoint_frozen) made->state->module->checkpoint_frozen_layers = *checkpoint_frozen;
        made->bytes = made->state->ParameterBytes();
      },
      [made](Napi::Env env) -> Napi::Value {
        auto external = Napi::External<CreatedModel>::New(env, made.get());
        if (napi_type_tag_object(env, external, &kCreatedModelTag) != napi_ok) {
          ThrowJs(env, "could not tag the created model");
        }
        Napi::Object model = env.GetInstanceData<NativeModelClass>()->constructor.New({external});
        made->state.reset();  // the JS object holds it now
        return model;
      });
}

// Only NativeModel.create constructs (see kCreatedModelTag).
NativeModel::NativeModel(const Napi::CallbackInfo& info) : Napi::ObjectWrap<NativeModel>(info) {
  Napi::Env env = info.Env();
  js::TagAs<NativeModel>(info);
  bool created = false;
  if (info.Length() == 1 && info[0].IsExternal() &&
      napi_check_object_type_tag(env, info[0], &kCreatedModelTag, &created) != napi_ok) {
    created = false;
  }
  if (!created) {
    js::TypeError(env,
                  "a NativeModel is made by NativeModel.create(spec, options), which creates it off the JS thread and "
                  "returns a Promise");
  }
  const auto* made = info[0].As<Napi::External<CreatedModel>>().Data();
  state_ = made->state;
  ReportMemory(env, made->bytes);
}

NativeModel::~NativeModel() {
  if (reported_bytes_ != 0) Napi::MemoryManagement::AdjustExternalMemory(Env(), -reported_bytes_);
}

std::shared_ptr<ModelState> NativeModel::State(Napi::Env env) const {
  if (!state_) ThrowJs(env, "this model was disposed", "LLAMAPRO_DISPOSED");
  return state_;
}

std::unique_lock<std::mutex> LockOrBusy(Napi::Env env, ModelState& state, const char* method) {
  std::unique_lock<std::mutex> lock(state.mutex, std::try_to_lock);
  if (!lock.owns_lock()) {
    ThrowJs(env,
            std::string(method) + ": the model is busy with an asynchronous operation (await it before calling " +
                method + ")",
            "LLAMAPRO_BUSY");
  }
  return lock;
}

// Tells V8 how much native memory this object holds, so that garbage collection weighs it.
Napi::Value NativeModel::ReportMemory(Napi::Env env, int64_t bytes) {
  Napi::MemoryManagement::AdjustExternalMemory(env, bytes - reported_bytes_);
  reported_bytes_ = bytes;
  return env.Undefined();
}

// memory() -> bytes held by this model's parameters, gradients and optimizer state
Napi::Value NativeModel::Memory(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto state = State(env);
  const auto lock = LockOrBusy(env, *state, "memory");
  int64_t grads = 0;
  for (const auto& p : state->Params()) {
    const auto& g = p.tensor.grad();
    if (g.defined()) grads += g.numel() * static_cast<int64_t>(g.element_size());
  }
  Napi::Object out = Napi::Object::New(env);
  out.Set("parameterBytes", static_cast<double>(state->ParameterBytes()));
  out.Set("gradientBytes", static_cast<double>(grads));
  out.Set("optimizerBytes", static_cast<double>(state->OptimizerBytes()));
  return out;
}

Napi::Value NativeModel::Dispose(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (state_) {
    ReportMemory(env, 0);
    state_.reset();  // a worker still running keeps its own reference until it finishes
    ReleaseCpuCache();
  }
  return env.Undefined();
}

Napi::Value MemoryStats(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object out = Napi::Object::New(env);
  const auto cpu = CpuMemory();
  Napi::Object cpu_js = Napi::Object::New(env);
  cpu_js.Set("current", static_cast<double>(cpu.current));
  cpu_js.Set("peak", static_cast<double>(cpu.peak));
  cpu_js.Set("cached", static_cast<double>(CpuCachedBytes()));
  out.Set("cpu", cpu_js);
  const int device = info.Length() > 0 && info[0].IsNumber() ? info[0].As<Napi::Number>().Int32Value() : 0;
  MemoryCounters cuda{};
  if (CudaMemory(device, &cuda)) {
    Napi::Object cuda_js = Napi::Object::New(env);
    cuda_js.Set("current", static_cast<double>(cuda.current));
    cuda_js.Set("peak", static_cast<double>(cuda.peak));
    out.Set("cuda", cuda_js);
  } else {
    out.Set("cuda", env.Null());
  }
  return out;
}

Napi::Value ResetPeakMemory(const Napi::CallbackInfo& info) {
  ResetCpuPeak();
  const int device = info.Length() > 0 && info[0].IsNumber() ? info[0].As<Napi::Number>().Int32Value() : 0;
  ResetCudaPeak(device);
  return info.Env().Undefined();
}

}  // namespace llamapro
