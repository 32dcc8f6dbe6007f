#include "model_contract.h"

#include <algorithm>
#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "js_convert.h"

namespace llamapro {
namespace {

// The fields this addon reads, by the names lib/ gives them. SetModelContract checks that the contract names
// exactly these, so a field added on one side only stops the addon from loading instead of going unread.
struct SizeField {
  const char* name;
  int64_t ModelSpec::*member;
};
constexpr SizeField kSizeFields[] = {
    {"vocabSize", &ModelSpec::vocab_size},
    {"hiddenSize", &ModelSpec::hidden_size},
    {"intermediateSize", &ModelSpec::intermediate_size},
    {"numLayers", &ModelSpec::num_layers},
    {"numHeads", &ModelSpec::num_heads},
    {"numKvHeads", &ModelSpec::num_kv_heads},
    {"headDim", &ModelSpec::head_dim},
};
struct FlagField {
  const char* name;
  bool ModelSpec::*member;
};
constexpr FlagField kFlagFields[] = {
    {"qkvBias", &ModelSpec::qkv_bias},
    {"oBias", &ModelSpec::o_bias},
    {"mlpBias", &ModelSpec::mlp_bias},
    {"tieWordEmbeddings", &ModelSpec::tie_word_embeddings},
};
struct RopeNumber {
  const char* name;
  double RopeSpec::*member;
};
constexpr RopeNumber kRopeNumbers[] = {
    {"theta", &RopeSpec::theta},
    {"factor", &RopeSpec::factor},
    {"lowFreqFactor", &RopeSpec::low_freq_factor},
    {"highFreqFactor", &RopeSpec::high_freq_factor},
    {"originalMaxPositionEmbeddings", &RopeSpec::original_max_position_embeddings},
};
// RotaryInverseFrequencies (llama_modules.cc) implements these.
const std::set<std::string> kRopeTypes = {"default", "linear", "llama3"};

// Set once, on the JS thread, before any spec is read (SpecFromJs runs on the JS thread too).
std::map<std::string, int64_t> g_size_limits;
std::vector<std::string> g_rope_types;

std::string Joined(const std::set<std::string>& names) {
  std::string out;
  for (const auto& name : names) out += (out.empty() ? "" : ", ") + name;
  return out;
}

template <typename Fields>
std::set<std::string> Names(const Fields& fields) {
  std::set<std::string> names;
  for (const auto& field : fields) names.insert(field.name);
  return names;
}

void ExpectSame(Napi::Env env, const char* what, const std::set<std::string>& contract,
                const std::set<std::string>& addon) {
  if (contract == addon) return;
  js::TypeError(env, std::string("the model contract (lib/checkpoint/model-contract.ts) lists ") + what + " {" +
                         Joined(contract) + "} but this addon reads {" + Joined(addon) +
                         "}: rebuild the addon (npm run build:native) from the same source");
}

std::set<std::string> StringSet(const Napi::Value& value, const std::string& what) {
  const auto list = js::StringArray(value, what);
  return {list.begin(), list.end()};
}

}  // namespace

Napi::Value SetModelContractJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const auto contract = js::Object(info.Length() > 0 ? info[0] : env.Undefined(), "model contract");
  const auto sizes = js::Object(contract.Get("sizes"), "model contract.sizes");
  std::map<std::string, int64_t> limits;
  const auto names = sizes.GetPropertyNames();
  std::set<std::string> size_names;
  for (uint32_t i = 0; i < names.Length(); ++i) {
    const std::string name = names.Get(i).ToString().Utf8Value();
    const int64_t limit = js::Integer(sizes.Get(name), "model contract.sizes." + name);
    if (limit <= 0 || limit > (int64_t{1} << 31)) {
      js::RangeError(env, "model contract.sizes." + name + " must be between 1 and 2^31");
    }
    limits[name] = limit;
    size_names.insert(name);
  }
  ExpectSame(env, "size fields", size_names, Names(kSizeFields));
  ExpectSame(env, "flags", StringSet(contract.Get("flags"), "model contract.flags"), Names(kFlagFields));
  const auto rope_numbers = StringSet(contract.Get("ropeNumbers"), "model contract.ropeNumbers");
  ExpectSame(env, "rope numbers", rope_numbers, Names(kRopeNumbers));
  const auto rope_types = js::StringArray(contract.Get("ropeTypes"), "model contract.ropeTypes");
  ExpectSame(env, "rope types", {rope_types.begin(), rope_types.end()}, kRopeTypes);
  if (!g_size_limits.empty() && g_size_limits != limits) {
    js::TypeError(env, "the model contract is set once, when the addon loads");
  }
  g_size_limits = limits;
  g_rope_types = rope_types;
  return env.Undefined();
}

ModelSpec SpecFromJs(const Napi::Object& obj) {
  const Napi::Env env = obj.Env();
  if (g_size_limits.empty()) {
    js::TypeError(env, "spec: the model contract was not given (load the addon through llamapro's lib/native/load.ts)");
  }
  ModelSpec spec;
  // Every size is read and bounded before anything else: a spec that slipped past lib/ must not make us allocate
  // per-layer modules or tensors until the process aborts (test/model-spec.test.ts feeds each limit + 1).
  for (const auto& field : kSizeFields) {
    const int64_t value = js::Integer(obj.Get(field.name), std::string("spec.") + field.name);
    const int64_t limit = g_size_limits.at(field.name);
    const std::string name = std::string("spec.") + field.name;
    if (value <= 0) js::TypeError(env, name + " must be positive (got " + std::to_string(value) + ")");
    if (value > limit) {
      js::TypeError(env, name + " is " + std::to_string(value) + ", above llamapro's limit " + std::to_string(limit) +
                             " (the model contract, lib/checkpoint/model-contract.ts)");
    }
    spec.*field.member = value;
  }
  spec.rms_norm_eps = js::Number(obj.Get("rmsNormEps"), "spec.rmsNormEps");
  const auto rope = js::Object(obj.Get("rope"), "spec.rope");
  spec.rope.type = js::String(rope.Get("type"), "spec.rope.type");
  for (const auto& field : kRopeNumbers) {
    spec.rope.*field.member = js::Number(rope.Get(field.name), std::string("spec.rope.") + field.name);
  }
  for (const auto& field : kFlagFields) {
    spec.*field.member = js::Bool(obj.Get(field.name), std::string("spec.") + field.name);
  }
  const auto windows = js::Array(obj.Get("slidingWindows"), "spec.slidingWindows");
  const int64_t layer_limit = g_size_limits.at("numLayers");
  if (windows.Length() > static_cast<uint32_t>(layer_limit)) {
    js::TypeError(env,
                  "spec.slidingWindows has more entries than llamapro's layer limit " + std::to_string(layer_limit));
  }
  for (uint32_t i = 0; i < windows.Length(); ++i) {
    const auto w = windows.Get(i);
    const int64_t window = w.IsNull() ? 0 : js::Integer(w, "spec.slidingWindows[" + std::to_string(i) + "]");
    if (window < 0) js::TypeError(env, "spec.slidingWindows entries must be null or positive");
    spec.sliding_windows.push_back(window);
  }
  if (spec.num_heads % spec.num_kv_heads != 0) {
    js::TypeError(env, "spec.numHeads must be a multiple of spec.numKvHeads");
  }
  if (spec.head_dim % 2 != 0) js::TypeError(env, "spec.headDim must be even");
  if (static_cast<int64_t>(spec.sliding_windows.size()) != spec.num_layers) {
    js::TypeError(env, "spec.slidingWindows must have one entry per layer");
  }
  if (std::find(g_rope_types.begin(), g_rope_types.end(), spec.rope.type) == g_rope_types.end()) {
    std::string valid;
    for (size_t i = 0; i < g_rope_types.size(); ++i) {
      valid += (i == 0 ? "" : i + 1 == g_rope_types.size() ? " or " : ", ") + g_rope_types[i];
    }
    js::TypeError(env, "spec.rope.type must be " + valid);
  }
  return spec;
}

}  // namespace llamapro
