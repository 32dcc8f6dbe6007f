// What the files of NativeModel's methods share (native_model.cc, native_model_training.cc,
// native_model_tensors.cc): the busy check of the synchronous methods and the conversions of their results to JS.
#pragma once
#include <napi.h>

#include <mutex>
#include <string>
#include <vector>

#include "model_state.h"

namespace llamapro {

// The synchronous methods run on the JS thread, so they must never wait for the model's mutex: a training step
// can hold it for seconds, and an Electron UI would freeze for that long. They answer LLAMAPRO_BUSY instead.
std::unique_lock<std::mutex> LockOrBusy(Napi::Env env, ModelState& state, const char* method);

inline std::string DtypeName(c10::ScalarType type) {
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

inline Napi::Array ShapeToJs(Napi::Env env, c10::IntArrayRef shape) {
  Napi::Array out = Napi::Array::New(env, shape.size());
  for (size_t i = 0; i < shape.size(); ++i) out.Set(static_cast<uint32_t>(i), static_cast<double>(shape[i]));
  return out;
}

}  // namespace llamapro
