// The model contract (lib/checkpoint/model-contract.ts declares it once): the spec's fields and their limits.
// lib/native/load.ts passes it when the addon loads; the addon refuses one whose fields are not the ones it reads
// (model_spec.h), then checks every spec from JS against its limits before anything is allocated. Until it is
// given, every spec is refused.
#pragma once
#include <napi.h>

#include "model_spec.h"

namespace llamapro {

// setModelContract({sizes: {vocabSize: max, ...}, flags: [...], ropeTypes: [...], ropeNumbers: [...]}). Given
// again, it must be the same.
Napi::Value SetModelContractJs(const Napi::CallbackInfo& info);

// The spec from NativeModel.create, checked field by field (a TypeError naming the field) against the contract.
ModelSpec SpecFromJs(const Napi::Object& obj);

}  // namespace llamapro
