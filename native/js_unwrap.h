// Unwrapping native objects passed back in from JS. Napi::ObjectWrap<T>::Unwrap trusts the caller about the class:
// handed an object of another wrapped class it reinterprets that object's pointer (a hang or a crash), and handed a
// plain object it returns null. Every wrapped class therefore tags its objects (napi_type_tag_object) in its
// constructor, and every method that takes one back checks the tag first, here, with a TypeError naming the class.
#pragma once
#include <napi.h>

#include <string>

#include "js_convert.h"

namespace llamapro::js {

// T declares `static const napi_type_tag kTypeTag;` and `static constexpr const char* kClassName`.
template <typename T>
void TagAs(const Napi::CallbackInfo& info) {
  napi_type_tag_object(info.Env(), info.This(), &T::kTypeTag);
}

template <typename T>
T* Unwrap(const Napi::Value& value, const std::string& what) {
  Napi::Env env = value.Env();
  bool tagged = false;
  if (value.IsObject() && napi_check_object_type_tag(env, value, &T::kTypeTag, &tagged) != napi_ok) tagged = false;
  if (!tagged) TypeError(env, what + " must be a " + T::kClassName);
  T* object = Napi::ObjectWrap<T>::Unwrap(value.As<Napi::Object>());
  // A tagged object whose constructor threw has no native half.
  if (object == nullptr) TypeError(env, what + " must be a constructed " + T::kClassName);
  return object;
}

}  // namespace llamapro::js
