// Reading plain values out of JS arguments on the main thread, with TypeErrors that name the field.
// lib/ validates user input first; these checks keep a wrong call from lib/ from reaching LibTorch.
#pragma once
#include <napi.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

namespace llamapro::js {

[[noreturn]] inline void TypeError(Napi::Env env, const std::string& message) {
  Napi::Error error = Napi::TypeError::New(env, message);
  error.Value().Set("code", Napi::String::New(env, "LLAMAPRO_ARG"));
  throw error;
}

[[noreturn]] inline void RangeError(Napi::Env env, const std::string& message) {
  Napi::Error error = Napi::RangeError::New(env, message);
  error.Value().Set("code", Napi::String::New(env, "LLAMAPRO_ARG"));
  throw error;
}

// a * b for sizes from JS that reach an allocation or a pointer: a RangeError naming `what` when either is negative
// or the product does not fit in int64.
inline int64_t CheckedProduct(Napi::Env env, int64_t a, int64_t b, const std::string& what) {
  int64_t product = 0;
  if (a < 0 || b < 0) {
    RangeError(env, what + " has a negative factor (" + std::to_string(a) + " * " + std::to_string(b) + ")");
  }
  if (__builtin_mul_overflow(a, b, &product)) {
    RangeError(env, what + " overflows (" + std::to_string(a) + " * " + std::to_string(b) + ")");
  }
  return product;
}

inline double Number(const Napi::Value& value, const std::string& what) {
  if (!value.IsNumber()) TypeError(value.Env(), what + " must be a number");
  const double v = value.As<Napi::Number>().DoubleValue();
  if (!std::isfinite(v)) TypeError(value.Env(), what + " must be finite");
  return v;
}

inline int64_t Integer(const Napi::Value& value, const std::string& what) {
  const double v = Number(value, what);
  if (v != std::floor(v) || std::fabs(v) > 9007199254740991.0) TypeError(value.Env(), what + " must be an integer");
  return static_cast<int64_t>(v);
}

inline bool Bool(const Napi::Value& value, const std::string& what) {
  if (!value.IsBoolean()) TypeError(value.Env(), what + " must be a boolean");
  return value.As<Napi::Boolean>().Value();
}

inline std::string String(const Napi::Value& value, const std::string& what) {
  if (!value.IsString()) TypeError(value.Env(), what + " must be a string");
  return value.As<Napi::String>().Utf8Value();
}

inline Napi::Object Object(const Napi::Value& value, const std::string& what) {
  if (!value.IsObject() || value.IsArray()) TypeError(value.Env(), what + " must be an object");
  return value.As<Napi::Object>();
}

inline Napi::Array Array(const Napi::Value& value, const std::string& what) {
  if (!value.IsArray()) TypeError(value.Env(), what + " must be an array");
  return value.As<Napi::Array>();
}

inline std::vector<int64_t> IntegerArray(const Napi::Value& value, const std::string& what) {
  const auto array = Array(value, what);
  std::vector<int64_t> out(array.Length());
  for (uint32_t i = 0; i < array.Length(); ++i) out[i] = Integer(array.Get(i), what + "[" + std::to_string(i) + "]");
  return out;
}

inline std::vector<std::string> StringArray(const Napi::Value& value, const std::string& what) {
  const auto array = Array(value, what);
  std::vector<std::string> out(array.Length());
  for (uint32_t i = 0; i < array.Length(); ++i) out[i] = String(array.Get(i), what + "[" + std::to_string(i) + "]");
  return out;
}

inline std::vector<uint8_t> Bytes(const Napi::Value& value, const std::string& what) {
  if (!value.IsTypedArray() || value.As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array) {
    TypeError(value.Env(), what + " must be a Uint8Array");
  }
  const auto bytes = value.As<Napi::Uint8Array>();
  return std::vector<uint8_t>(bytes.Data(), bytes.Data() + bytes.ElementLength());
}

// An Int32Array of batch * seq token ids or labels, copied (the worker must not borrow JS memory).
inline std::vector<int32_t> Int32s(const Napi::Value& value, size_t expected, const std::string& what) {
  if (!value.IsTypedArray() || value.As<Napi::TypedArray>().TypedArrayType() != napi_int32_array) {
    TypeError(value.Env(), what + " must be an Int32Array");
  }
  const auto array = value.As<Napi::Int32Array>();
  if (array.ElementLength() != expected) {
    TypeError(value.Env(), what + " holds " + std::to_string(array.ElementLength()) + " values, batch * seq is " +
                               std::to_string(expected));
  }
  return std::vector<int32_t>(array.Data(), array.Data() + array.ElementLength());
}

}  // namespace llamapro::js
