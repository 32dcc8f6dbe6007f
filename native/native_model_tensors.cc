// NativeModel's tensors by name: loading and saving them (safetensors ranges), random initialisation, growing the
// model (LLaMA-Pro blocks, LoRA adapters) and reading parameters, optimizer state and gradients back for checks.
#include "native_model.h"

#include <string>
#include <utility>
#include <vector>

#include "async_work.h"
#include "js_convert.h"
#include "js_unwrap.h"
#include "native_model_shared.h"
#include "tensor_io.h"

namespace llamapro {

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

}  // namespace llamapro
