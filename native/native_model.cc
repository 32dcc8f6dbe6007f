#include "native_model.h"

#include "process_group.h"

#include <torch/cuda.h>
#include <torch/version.h>

#include <algorithm>
#include <cstring>
#include <optional>
#include <sstream>

#include "async_work.h"
#include "js_unwrap.h"
#include "js_convert.h"
#include "memory_stats.h"
#include "model_contract.h"
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

std::string DtypeName(c10::ScalarType type) {
  switch (type) {
    case torch::kFloat32: return "float32";
    case torch::kBFloat16: return "bfloat16";
    case torch::kFloat16: return "float16";
    default: return c10::toString(type);
  }
}

template <typename T>
Napi::Array NumbersToJs(Napi::Env env, const std::vector<T>& values) {
  Napi::Array out = Napi::Array::New(env, values.size());
  for (size_t i = 0; i < values.size(); ++i) out.Set(static_cast<uint32_t>(i), static_cast<double>(values[i]));
  return out;
}

Napi::Array ShapeToJs(Napi::Env env, c10::IntArrayRef shape) {
  Napi::Array out = Napi::Array::New(env, shape.size());
  for (size_t i = 0; i < shape.size(); ++i) out.Set(static_cast<uint32_t>(i), static_cast<double>(shape[i]));
  return out;
}

// Token ids or labels from JS, checked against the vocabulary before they index an embedding table.
struct Batch {
  int64_t batch = 0;
  int64_t seq = 0;
  std::vector<int32_t> ids;
  std::vector<int32_t> labels;  // empty: no labels
};

Batch BatchFromJs(const Napi::CallbackInfo& info, bool with_labels) {
  Batch b;
  const size_t shape_at = with_labels ? 2 : 1;
  b.batch = js::Integer(info[shape_at], "batch");
  b.seq = js::Integer(info[shape_at + 1], "seq");
  if (b.batch <= 0) js::RangeError(info.Env(), "batch must be positive (got " + std::to_string(b.batch) + ")");
  if (b.seq <= 0) js::RangeError(info.Env(), "seq must be positive (got " + std::to_string(b.seq) + ")");
  // Checked before the length comparison: a wrapped product could match a short array and reach from_blob.
  const size_t count = static_cast<size_t>(js::CheckedProduct(info.Env(), b.batch, b.seq, "batch * seq"));
  b.ids = js::Int32s(info[0], count, "ids");
  if (with_labels) b.labels = js::Int32s(info[1], count, "labels");
  return b;
}

void CheckIds(const Batch& b, int64_t vocab) {
  for (size_t i = 0; i < b.ids.size(); ++i) {
    if (b.ids[i] < 0 || b.ids[i] >= vocab) {
      throw std::invalid_argument("token id " + std::to_string(b.ids[i]) + " at position " + std::to_string(i) +
                                  " is outside the vocabulary (0.." + std::to_string(vocab - 1) + ")");
    }
  }
  for (size_t i = 0; i < b.labels.size(); ++i) {
    if (b.labels[i] != -100 && (b.labels[i] < 0 || b.labels[i] >= vocab)) {
      throw std::invalid_argument("label " + std::to_string(b.labels[i]) + " at position " + std::to_string(i) +
                                  " is neither -100 nor a token id (0.." + std::to_string(vocab - 1) + ")");
    }
  }
}

torch::Tensor ToTensor(std::vector<int32_t>& values, int64_t batch, int64_t seq) {
  return torch::from_blob(values.data(), {batch, seq}, torch::kInt32).to(torch::kInt64);
}

int64_t CountedTargets(const Batch& b) {
  int64_t counted = 0;
  for (int64_t row = 0; row < b.batch; ++row) {
    for (int64_t t = 1; t < b.seq; ++t) counted += b.labels[static_cast<size_t>(row * b.seq + t)] != -100;
  }
  return counted;
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

// The synchronous methods run on the JS thread, so they must never wait for the model's mutex: a training step
// can hold it for seconds, and an Electron UI would freeze for that long. They answer LLAMAPRO_BUSY instead.
static std::unique_lock<std::mutex> LockOrBusy(Napi::Env env, ModelState& state, const char* method) {
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

Napi::Value NativeModel::Parameters(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto state = State(env);
  const auto lock = LockOrBusy(env, *state, "parameters");
  const auto& params = state->Params();
  Napi::Array out = Napi::Array::New(env, params.size());
  for (size_t i = 0; i < params.size(); ++i) {
    const auto& t = params[i].tensor;
    Napi::Object p = Napi::Object::New(env);
    p.Set("name", params[i].name);
    p.Set("shape", ShapeToJs(env, t.sizes()));
    p.Set("dtype", DtypeName(t.scalar_type()));
    p.Set("numel", static_cast<double>(t.numel()));
    p.Set("requiresGrad", t.requires_grad());
    out.Set(static_cast<uint32_t>(i), p);
  }
  return out;
}

// load([{ name, file, offset, nbytes, dtype, shape }])
Napi::Value NativeModel::Load(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto state = State(env);
  const auto array = js::Array(info[0], "items");
  auto items = std::make_shared<std::vector<ReadItem>>();
  for (uint32_t i = 0; i < array.Length(); ++i) {
    const std::string at = "items[" + std::to_string(i) + "]";
    const auto obj = js::Object(array.Get(i), at);
    ReadItem item;
    item.name = js::String(obj.Get("name"), at + ".name");
    item.file = js::String(obj.Get("file"), at + ".file");
    item.offset = js::Integer(obj.Get("offset"), at + ".offset");
    item.nbytes = js::Integer(obj.Get("nbytes"), at + ".nbytes");
    item.dtype = js::String(obj.Get("dtype"), at + ".dtype");
    item.shape = js::IntegerArray(obj.Get("shape"), at + ".shape");
    if (item.offset < 0 || item.nbytes < 0) js::TypeError(env, at + ": offset and nbytes must be non-negative");
    items->push_back(std::move(item));
  }
  auto bytes = std::make_shared<int64_t>(0);
  return RunAsync(
      Value(), "llamapro.load",
      [state, items, bytes] {
        std::lock_guard<std::mutex> lock(state->mutex);
        ReadTensors(*items, [&](const std::string& name) { return state->StateTensor(name, /*create=*/true); });
        *bytes = state->ParameterBytes() + state->optimizer.StateBytes();
      },
      [this, bytes](Napi::Env env) { return ReportMemory(env, state_ ? *bytes : 0); });
}

Napi::Value NativeModel::InitRandom(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto state = State(env);
  const auto seed = static_cast<uint64_t>(js::Integer(info[0], "seed"));
  const double std = js::Number(info[1], "std");
  return RunAsync(
      Value(), "llamapro.initRandom",
      [state, seed, std] {
        std::lock_guard<std::mutex> lock(state->mutex);
        state->InitRandom(seed, std);
      },
      [](Napi::Env env) { return env.Undefined(); });
}

// forward(ids: Int32Array, batch, seq) -> Float32Array [batch, seq, vocab]
Napi::Value NativeModel::Forward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto state = State(env);
  auto batch = std::make_shared<Batch>(BatchFromJs(info, false));
  auto logits = std::make_shared<torch::Tensor>();
  return RunAsync(
      Value(), "llamapro.forward",
      [state, batch, logits] {
        std::lock_guard<std::mutex> lock(state->mutex);
        CheckIds(*batch, state->module->spec.vocab_size);
        *logits = state->Logits(ToTensor(batch->ids, batch->batch, batch->seq)).to(torch::kCPU).contiguous();
      },
      [logits](Napi::Env env) -> Napi::Value {
        // A copy, not an external buffer: Electron's V8 sandbox refuses external ArrayBuffers.
        auto out = Napi::Float32Array::New(env, static_cast<size_t>(logits->numel()));
        std::memcpy(out.Data(), logits->data_ptr<float>(), static_cast<size_t>(logits->numel()) * sizeof(float));
        logits->reset();
        return out;
      });
}

// loss(ids, labels, batch, seq) -> { loss, tokens }
Napi::Value NativeModel::Loss(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto state = State(env);
  auto batch = std::make_shared<Batch>(BatchFromJs(info, true));
  auto result = std::make_shared<std::pair<double, int64_t>>();
  return RunAsync(
      Value(), "llamapro.loss",
      [state, batch, result] {
        std::lock_guard<std::mutex> lock(state->mutex);
        CheckIds(*batch, state->module->spec.vocab_size);
        const auto loss = state->Loss(ToTensor(batch->ids, batch->batch, batch->seq),
                                      ToTensor(batch->labels, batch->batch, batch->seq), CountedTargets(*batch));
        *result = {loss.loss.item<double>(), loss.tokens};
      },
      [result](Napi::Env env) -> Napi::Value {
        Napi::Object out = Napi::Object::New(env);
        out.Set("loss", result->first);
        out.Set("tokens", static_cast<double>(result->second));
        return out;
      });
}

// save(path, header: Uint8Array, [{ name, dtype, begin, end }])
Napi::Value NativeModel::Save(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto state = State(env);
  const auto path = js::String(info[0], "path");
  auto header = std::make_shared<std::vector<uint8_t>>(js::Bytes(info[1], "header"));
  const auto array = js::Array(info[2], "items");
  auto items = std::make_shared<std::vector<WriteItem>>();
  for (uint32_t i = 0; i < array.Length(); ++i) {
    const std::string at = "items[" + std::to_string(i) + "]";
    const auto obj = js::Object(array.Get(i), at);
    WriteItem item;
    item.name = js::String(obj.Get("name"), at + ".name");
    item.dtype = js::String(obj.Get("dtype"), at + ".dtype");
    item.begin = js::Integer(obj.Get("begin"), at + ".begin");
    item.end = js::Integer(obj.Get("end"), at + ".end");
    items->push_back(std::move(item));
  }
  return RunAsync(
      Value(), "llamapro.save",
      [state, path, header, items] {
        std::lock_guard<std::mutex> lock(state->mutex);
        WriteSafetensors(path, *header, *items,
                         [&](const std::string& name) { return state->StateTensor(name, false); });
      },
      [](Napi::Env env) { return env.Undefined(); });
}

// setTrainable(names: string[], masterDtype: string | null)
Napi::Value NativeModel::SetTrainable(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto state = State(env);
  const auto list = js::StringArray(info[0], "names");
  auto names = std::make_shared<std::unordered_set<std::string>>(list.begin(), list.end());
  std::optional<c10::ScalarType> master;
  if (!info[1].IsNull() && !info[1].IsUndefined()) {
    try {
      master = ScalarTypeFromName(js::String(info[1], "masterDtype"));
    } catch (const std::invalid_argument& e) {
      js::TypeError(env, e.what());
    }
  }
  auto bytes = std::make_shared<int64_t>(0);
  return RunAsync(
      Value(), "llamapro.setTrainable",
      [state, names, master, bytes] {
        std::lock_guard<std::mutex> lock(state->mutex);
        state->SetTrainable(*names, master);
        *bytes = state->ParameterBytes() + state->optimizer.StateBytes();
      },
      [this, bytes](Napi::Env env) { return ReportMemory(env, state_ ? *bytes : 0); });
}

// configureOptimizer({ noDecay: string[], step: number, lossScaling: boolean, lossScale?: number, goodSteps?: number })
Napi::Value NativeModel::ConfigureOptimizer(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto state = State(env);
  const auto options = js::Object(info[0], "options");
  const auto no_decay = js::StringArray(options.Get("noDecay"), "options.noDecay");
  const int64_t step = js::Integer(options.Get("step"), "options.step");
  const bool scaling = js::Bool(options.Get("lossScaling"), "options.lossScaling");
  const auto lock = LockOrBusy(env, *state, "configureOptimizer");
  state->optimizer.no_decay = std::unordered_set<std::string>(no_decay.begin(), no_decay.end());
  state->optimizer.step = step;
  state->scaler.enabled = scaling;
  if (options.Has("lossScale") && !options.Get("lossScale").IsUndefined()) {
    state->scaler.scale = js::Number(options.Get("lossScale"), "options.lossScale");
  }
  if (options.Has("goodSteps") && !options.Get("goodSteps").IsUndefined()) {
    state->scaler.good_steps = js::Integer(options.Get("goodSteps"), "options.goodSteps");
  }
  state->ResetStepWindow();  // a new run: no micro-step of an earlier one counts towards its first step
  state->optimizer.lr_scale.clear();
  if (options.Has("lrScale") && !options.Get("lrScale").IsUndefined()) {
    const auto scales = js::Object(options.Get("lrScale"), "options.lrScale");
    const auto keys = scales.GetPropertyNames();
    for (uint32_t i = 0; i < keys.Length(); ++i) {
      const std::string name = keys.Get(i).As<Napi::String>().Utf8Value();
      const double factor = js::Number(scales.Get(name), "options.lrScale[" + name + "]");
      if (!(factor > 0.0)) js::TypeError(env, "options.lrScale[" + name + "] must be positive");
      state->optimizer.lr_scale[name] = factor;
    }
  }
  return env.Undefined();
}

// attachProcessGroup(group: NativeProcessGroup | null): from now on each update sums the trainable gradients
// over the group's ranks first (null detaches).
Napi::Value NativeModel::AttachProcessGroup(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto state = State(env);
  std::shared_ptr<Communicator> communicator;
  if (!info[0].IsNull() && !info[0].IsUndefined()) communicator = CommunicatorFromJs(info[0], "group");
  int64_t zero_stage = 0;
  if (info.Length() > 1 && !info[1].IsUndefined()) {
    zero_stage = js::Integer(js::Object(info[1], "options").Get("zeroStage"), "options.zeroStage");
    if (zero_stage != 0 && zero_stage != 1) js::TypeError(env, "options.zeroStage must be 0 or 1");
  }
  const auto lock = LockOrBusy(env, *state, "attachProcessGroup");
  state->communicator = communicator;
  state->zero_stage = static_cast<int>(zero_stage);
  return env.Undefined();
}

// gatherOptimizerState(): with zero_stage 1 a collective (every rank calls it): rank 0 receives the whole AdamW
// state, per parameter, for a checkpoint to write; scatterOptimizerState() returns to the sharded state. Without
// ZeRO both do nothing.
Napi::Value NativeModel::GatherOptimizerState(const Napi::CallbackInfo& info) {
  auto state = State(info.Env());
  return RunAsync(
      Value(), "llamapro.gatherOptimizerState",
      [state] {
        std::lock_guard<std::mutex> lock(state->mutex);
        if (state->Sharded()) state->Zero().Gather(*state->communicator, state->TrainableParams(), state->optimizer);
      },
      [](Napi::Env env) -> Napi::Value { return env.Undefined(); });
}

// scatterOptimizerState(): keeps this rank's chunks of whole per-parameter AdamW state (a loaded checkpoint, or
// what gatherOptimizerState put there) and frees the rest. Not a collective.
Napi::Value NativeModel::ScatterOptimizerState(const Napi::CallbackInfo& info) {
  auto state = State(info.Env());
  return RunAsync(
      Value(), "llamapro.scatterOptimizerState",
      [state] {
        std::lock_guard<std::mutex> lock(state->mutex);
        if (state->Sharded()) state->Zero().Scatter(state->TrainableParams(), state->optimizer);
      },
      [](Napi::Env env) -> Napi::Value { return env.Undefined(); });
}

Napi::Value NativeModel::OptimizerState(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto state = State(env);
  const auto lock = LockOrBusy(env, *state, "optimizerState");
  Napi::Object out = Napi::Object::New(env);
  out.Set("step", static_cast<double>(state->optimizer.step));
  out.Set("lossScale", state->scaler.scale);
  out.Set("goodSteps", static_cast<double>(state->scaler.good_steps));
  const auto names = state->optimizer.StateNames();
  Napi::Array list = Napi::Array::New(env, names.size());
  for (size_t i = 0; i < names.size(); ++i) list.Set(static_cast<uint32_t>(i), names[i]);
  out.Set("names", list);
  return out;
}

// trainStep(ids, labels, batch, seq, { lossMultiplier, update, lr, beta1, beta2, eps, weightDecay, maxGradNorm,
//                                      reportParamNorms, dropoutSeed?, stopRequested? })
// -> { loss, tokens, updated, skipped: 'nonfinite-loss' | 'nonfinite-grad' | null, gradNorm, updateMs, lossScale,
//      paramGradNorms?, and on the update: stepLoss, stopRequested, nonfiniteLossRanks (+ reducedBytes, reduceMs
//      with a process group) }
Napi::Value NativeModel::TrainStep(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto state = State(env);
  auto batch = std::make_shared<Batch>(BatchFromJs(info, true));
  const auto o = js::Object(info[4], "options");
  TrainStepOptions options;
  options.loss_multiplier = js::Number(o.Get("lossMultiplier"), "options.lossMultiplier");
  options.update = js::Bool(o.Get("update"), "options.update");
  options.hyper.lr = js::Number(o.Get("lr"), "options.lr");
  options.hyper.beta1 = js::Number(o.Get("beta1"), "options.beta1");
  options.hyper.beta2 = js::Number(o.Get("beta2"), "options.beta2");
  options.hyper.eps = js::Number(o.Get("eps"), "options.eps");
  options.hyper.weight_decay = js::Number(o.Get("weightDecay"), "options.weightDecay");
  options.max_grad_norm = js::Number(o.Get("maxGradNorm"), "options.maxGradNorm");
  options.report_param_norms = js::Bool(o.Get("reportParamNorms"), "options.reportParamNorms");
  if (o.Has("dropoutSeed") && !o.Get("dropoutSeed").IsUndefined()) {
    const int64_t seed = js::Integer(o.Get("dropoutSeed"), "options.dropoutSeed");
    if (seed < 0) js::TypeError(env, "options.dropoutSeed must be non-negative");
    options.dropout_seed = static_cast<uint64_t>(seed);
  }
  if (o.Has("stopRequested") && !o.Get("stopRequested").IsUndefined()) {
    options.stop_requested = js::Bool(o.Get("stopRequested"), "options.stopRequested");
  }
  auto result = std::make_shared<TrainStepResult>();
  return RunAsync(
      Value(), "llamapro.trainStep",
      [state, batch, options, result] {
        std::lock_guard<std::mutex> lock(state->mutex);
        CheckIds(*batch, state->module->spec.vocab_size);
        *result = state->TrainStep(ToTensor(batch->ids, batch->batch, batch->seq),
                                   ToTensor(batch->labels, batch->batch, batch->seq), CountedTargets(*batch), options);
      },
      [result, update = options.update, attached = state->communicator != nullptr](Napi::Env env) -> Napi::Value {
        Napi::Object out = Napi::Object::New(env);
        out.Set("loss", result->loss);
        out.Set("tokens", static_cast<double>(result->tokens));
        out.Set("updated", result->updated);
        const char* skipped = SkipReasonName(result->skipped);
        out.Set("skipped", skipped ? Napi::Value(Napi::String::New(env, skipped)) : env.Null());
        out.Set("gradNorm", result->grad_norm);
        out.Set("updateMs", result->update_ms);
        out.Set("lossScale", result->loss_scale);
        if (update) {
          out.Set("stepLoss", result->step_loss);
          out.Set("stopRequested", result->stop_requested);
          out.Set("nonfiniteLossRanks", NumbersToJs(env, result->nonfinite_loss_ranks));
          if (attached) {
            out.Set("reducedBytes", static_cast<double>(result->reduced_bytes));
            out.Set("reduceMs", result->reduce_ms);
          }
        }
        if (!result->param_grad_norms.empty()) {
          Napi::Object norms = Napi::Object::New(env);
          for (const auto& [name, norm] : result->param_grad_norms) norms.Set(name, norm);
          out.Set("paramGradNorms", norms);
        }
        return out;
      });
}

// setGradientCheckpointing(on: boolean, frozenLayers?: boolean): recompute the decoder layers that train (and with
// frozenLayers the frozen ones backward passes through too) in backward instead of keeping their activations
Napi::Value NativeModel::SetGradientCheckpointing(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto state = State(env);
  const bool on = js::Bool(info[0], "on");
  const bool frozen = info.Length() > 1 && !info[1].IsUndefined() ? js::Bool(info[1], "frozenLayers")
                                                                  : state->module->checkpoint_frozen_layers;
  const auto lock = LockOrBusy(env, *state, "setGradientCheckpointing");
  state->module->gradient_checkpointing = on;
  state->module->checkpoint_frozen_layers = frozen;
  return env.Undefined();
}

// insertBlocks(positions: number[]) -> new layer indices
Napi::Value NativeModel::InsertBlocks(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto state = State(env);
  const auto positions = js::IntegerArray(info[0], "positions");
  auto inserted = std::make_shared<std::vector<int64_t>>();
  auto bytes = std::make_shared<int64_t>(0);
  return RunAsync(
      Value(), "llamapro.insertBlocks",
      [state, positions, inserted, bytes] {
        std::lock_guard<std::mutex> lock(state->mutex);
        *inserted = state->InsertBlocks(positions);
        *bytes = state->ParameterBytes();
      },
      [this, inserted, bytes](Napi::Env env) -> Napi::Value {
        ReportMemory(env, state_ ? *bytes : 0);
        return NumbersToJs(env, *inserted);
      });
}

// addLora({ targets: string[], rank, alpha, useRslora, dropout, seed }) -> the new parameter names
Napi::Value NativeModel::AddLora(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto state = State(env);
  const auto o = js::Object(info[0], "options");
  LoraOptions options;
  options.targets = js::StringArray(o.Get("targets"), "options.targets");
  options.rank = js::Integer(o.Get("rank"), "options.rank");
  options.alpha = js::Number(o.Get("alpha"), "options.alpha");
  options.use_rslora = js::Bool(o.Get("useRslora"), "options.useRslora");
  options.dropout = js::Number(o.Get("dropout"), "options.dropout");
  options.seed = static_cast<uint64_t>(js::Integer(o.Get("seed"), "options.seed"));
  auto names = std::make_shared<std::vector<std::string>>();
  auto bytes = std::make_shared<int64_t>(0);
  return RunAsync(
      Value(), "llamapro.addLora",
      [state, options, names, bytes] {
        std::lock_guard<std::mutex> lock(state->mutex);
        *names = state->AddLora(options);
        *bytes = state->ParameterBytes();
      },
      [this, names, bytes](Napi::Env env) -> Napi::Value {
        ReportMemory(env, state_ ? *bytes : 0);
        Napi::Array out = Napi::Array::New(env, names->size());
        for (size_t i = 0; i < names->size(); ++i) out.Set(static_cast<uint32_t>(i), (*names)[i]);
        return out;
      });
}

// tensorInfo(name) -> { shape, dtype } for parameters and optimizer state ("exp_avg:<param>", ...)
Napi::Value NativeModel::TensorInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto state = State(env);
  const auto name = js::String(info[0], "name");
  const auto lock = LockOrBusy(env, *state, "tensorInfo");
  torch::Tensor tensor;
  try {
    tensor = state->StateTensor(name, false);
  } catch (const std::exception& e) {
    ThrowJs(env, e.what(), "LLAMAPRO_ARG");
  }
  Napi::Object out = Napi::Object::New(env);
  out.Set("shape", ShapeToJs(env, tensor.sizes()));
  out.Set("dtype", DtypeName(tensor.scalar_type()));
  return out;
}

// tensorBytes(name, safetensorsDtype) -> Buffer (a copy, little-endian, row-major)
Napi::Value NativeModel::TensorBytes(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto state = State(env);
  const auto name = js::String(info[0], "name");
  const auto dtype = js::String(info[1], "dtype");
  auto bytes = std::make_shared<torch::Tensor>();
  return RunAsync(
      Value(), "llamapro.tensorBytes",
      [state, name, dtype, bytes] {
        std::lock_guard<std::mutex> lock(state->mutex);
        *bytes =
            state->StateTensor(name, false).detach().to(torch::kCPU, ScalarTypeFromSafetensors(dtype)).contiguous();
      },
      [bytes](Napi::Env env) -> Napi::Value {
        const size_t n = static_cast<size_t>(bytes->numel()) * bytes->element_size();
        auto out = Napi::Buffer<uint8_t>::Copy(env, static_cast<const uint8_t*>(bytes->data_ptr()), n);
        bytes->reset();
        return out;
      });
}

// tensorMaxAbs(names) -> number[]: max |x| of each tensor (0 for an all-zero tensor)
Napi::Value NativeModel::TensorMaxAbs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto state = State(env);
  const auto names = js::StringArray(info[0], "names");
  auto values = std::make_shared<std::vector<double>>();
  return RunAsync(
      Value(), "llamapro.tensorMaxAbs",
      [state, names, values] {
        std::lock_guard<std::mutex> lock(state->mutex);
        torch::NoGradGuard no_grad;
        for (const auto& name : names) {
          const auto t = state->StateTensor(name, false);
          values->push_back(t.numel() == 0 ? 0.0 : t.detach().abs().max().to(torch::kFloat64).item<double>());
        }
      },
      [values](Napi::Env env) -> Napi::Value { return NumbersToJs(env, *values); });
}

// maxAbsDifference(other: NativeModel, pairs: [nameHere, nameThere][]) -> number[] (float64 comparison)
Napi::Value NativeModel::MaxAbsDifference(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto state = State(env);
  auto* other = js::Unwrap<NativeModel>(info[0], "other");
  auto other_state = other->State(env);
  const auto pairs_js = js::Array(info[1], "pairs");
  std::vector<std::pair<std::string, std::string>> pairs;
  for (uint32_t i = 0; i < pairs_js.Length(); ++i) {
    const auto pair = js::StringArray(pairs_js.Get(i), "pairs[" + std::to_string(i) + "]");
    if (pair.size() != 2) js::TypeError(env, "each pair must be [name, otherName]");
    pairs.emplace_back(pair[0], pair[1]);
  }
  auto values = std::make_shared<std::vector<double>>();
  return RunAsync(
      Value(), "llamapro.maxAbsDifference",
      [state, other_state, pairs, values] {
        std::unique_lock<std::mutex> a(state->mutex, std::defer_lock);
        std::unique_lock<std::mutex> b(other_state->mutex, std::defer_lock);
        if (state == other_state) {
          a.lock();
        } else {
          std::lock(a, b);
        }
        torch::NoGradGuard no_grad;
        for (const auto& [here, there] : pairs) {
          const auto x = state->StateTensor(here, false).detach().to(torch::kCPU, torch::kFloat64);
          const auto y = other_state->StateTensor(there, false).detach().to(torch::kCPU, torch::kFloat64);
          if (x.sizes() != y.sizes()) {
            throw std::invalid_argument("tensors " + here + " and " + there + " have different shapes");
          }
          values->push_back(x.numel() == 0 ? 0.0 : (x - y).abs().max().item<double>());
        }
      },
      [values](Napi::Env env) -> Napi::Value { return NumbersToJs(env, *values); });
}

// gradients() -> [{ name, norm }] for every parameter that holds a gradient now
Napi::Value NativeModel::Gradients(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto state = State(env);
  auto norms = std::make_shared<std::vector<std::pair<std::string, double>>>();
  return RunAsync(
      Value(), "llamapro.gradients",
      [state, norms] {
        std::lock_guard<std::mutex> lock(state->mutex);
        torch::NoGradGuard no_grad;
        for (const auto& p : state->Params()) {
          const auto& grad = p.tensor.grad();
          if (grad.defined()) {
            norms->emplace_back(p.name, at::linalg_vector_norm(grad, 2).to(torch::kFloat64).item<double>());
          }
        }
      },
      [norms](Napi::Env env) -> Napi::Value {
        Napi::Array out = Napi::Array::New(env, norms->size());
        for (size_t i = 0; i < norms->size(); ++i) {
          Napi::Object g = Napi::Object::New(env);
          g.Set("name", (*norms)[i].first);
          g.Set("norm", (*norms)[i].second);
          out.Set(static_cast<uint32_t>(i), g);
        }
        return out;
      });
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
