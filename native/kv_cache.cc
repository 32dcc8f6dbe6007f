#include "kv_cache.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <limits>
#include <string>

#include "async_work.h"
#include "fused_ops.h"
#include "js_convert.h"
#include "js_unwrap.h"
#include "native_model.h"

namespace llamapro {
namespace {

// Longest sequence one cache holds; lib/generate limits prompts and maxNewTokens well below it.
constexpr int64_t kMaxCacheLength = 1 << 20;

inline torch::Tensor As(const torch::Tensor& t, c10::ScalarType dtype) {
  return t.scalar_type() == dtype ? t : t.to(dtype);
}

}  // namespace

KvCacheState::KvCacheState(const std::shared_ptr<ModelState>& state)
    : model(state), num_layers_(state->module->spec.num_layers) {}

int64_t KvCacheState::Bytes() const {
  int64_t bytes = 0;
  for (const auto* list : {&keys_, &values_}) {
    for (const auto& t : *list) bytes += t.numel() * static_cast<int64_t>(t.element_size());
  }
  return bytes;
}

void KvCacheState::Truncate(int64_t length) {
  if (length < 0 || length > length_) {
    throw std::invalid_argument("truncate: length " + std::to_string(length) + " is outside 0.." +
                                std::to_string(length_));
  }
  length_ = length;
}

// Grows the cache (doubling) to hold `needed` positions, keeping what it holds, and extends the rotary tables.
void KvCacheState::Reserve(ModelState& state, int64_t needed) {
  if (needed <= capacity_) return;
  if (needed > kMaxCacheLength) {
    throw std::invalid_argument("the sequence would be " + std::to_string(needed) + " tokens; a cache holds at most " +
                                std::to_string(kMaxCacheLength));
  }
  const auto& spec = state.module->spec;
  const int64_t capacity = std::min(kMaxCacheLength, std::max<int64_t>({needed, 2 * capacity_, 64}));
  const auto options = torch::TensorOptions().dtype(state.dtype).device(state.device);
  for (int64_t i = 0; i < num_layers_; ++i) {
    auto k = torch::empty({spec.num_kv_heads, capacity, spec.head_dim}, options);
    auto v = torch::empty({spec.num_kv_heads, capacity, spec.head_dim}, options);
    if (static_cast<size_t>(i) < keys_.size() && length_ > 0) {
      k.narrow(1, 0, length_).copy_(keys_[static_cast<size_t>(i)].narrow(1, 0, length_));
      v.narrow(1, 0, length_).copy_(values_[static_cast<size_t>(i)].narrow(1, 0, length_));
    }
    if (static_cast<size_t>(i) < keys_.size()) {
      keys_[static_cast<size_t>(i)] = k;
      values_[static_cast<size_t>(i)] = v;
    } else {
      keys_.push_back(k);
      values_.push_back(v);
    }
  }
  // The same float32 arithmetic as CausalLMImpl::MakeContext, so each position's table row is bit-identical.
  const auto inv_freq = RotaryInverseFrequencies(spec).to(state.device);
  const auto positions = torch::arange(capacity, torch::TensorOptions().dtype(torch::kFloat32).device(state.device));
  const auto freqs = torch::outer(positions, inv_freq);
  const auto emb = torch::cat({freqs, freqs}, -1);
  const auto sin = freqs.sin();
  cos_ = emb.cos().to(state.dtype);
  sin_ = torch::cat({-sin, sin}, -1).to(state.dtype);
  capacity_ = capacity;
}

// x [1, T, hidden] at positions [past, past + T). Keys [key_start, past + T) are attended; `mask` (additive,
// [1, G*T, keys], or undefined when every one of those keys is visible to every query) removes the rest.
torch::Tensor KvCacheState::Attention(AttentionImpl& attn, const torch::Tensor& x, const torch::Tensor& cos,
                                      const torch::Tensor& sin, size_t layer, int64_t past, const torch::Tensor& mask,
                                      int64_t key_start) {
  const int64_t seq = x.size(1);
  const int64_t heads = attn.num_heads, kv_heads = attn.num_kv_heads, dim = attn.head_dim;
  auto q = attn.q_proj->forward(x).view({1, seq, heads, dim}).transpose(1, 2);
  auto k = attn.k_proj->forward(x).view({1, seq, kv_heads, dim}).transpose(1, 2);
  auto v = attn.v_proj->forward(x).view({1, seq, kv_heads, dim}).transpose(1, 2);
  q = Rotary(q, cos, sin);
  k = Rotary(k, cos, sin);
  keys_[layer].narrow(1, past, seq).copy_(k[0]);
  values_[layer].narrow(1, past, seq).copy_(v[0]);
  const int64_t total = past + seq - key_start;
  const auto keys = keys_[layer].narrow(1, key_start, total);  // [KV, L, D], strided over the capacity
  const auto values = values_[layer].narrow(1, key_start, total);
  // The G query heads sharing a KV head are stacked along the query axis (head h = kv * G + g, as repeat_kv).
  const int64_t groups = heads / kv_heads;
  const auto q_grouped = q.reshape({kv_heads, groups * seq, dim});
  const double scale = 1.0 / std::sqrt(static_cast<double>(dim));
  auto scores = mask.defined() ? at::baddbmm(mask, q_grouped, keys.transpose(1, 2), 1.0, scale)
                               : at::bmm(q_grouped, keys.transpose(1, 2)).mul_(scale);
  const auto dtype = scores.scalar_type();
  auto probs = dtype == torch::kFloat32 ? at::softmax(scores, -1) : at::softmax(scores, -1, torch::kFloat32).to(dtype);
  auto out = at::bmm(probs, values).view({1, heads, seq, dim}).transpose(1, 2).reshape({1, seq, heads * dim});
  return attn.o_proj->forward(out);
}

torch::Tensor KvCacheState::Step(ModelState& state, const std::vector<int32_t>& ids, bool all_logits) {
  torch::NoGradGuard no_grad;
  auto& module = state.module;
  const auto& spec = module->spec;
  if (spec.num_layers != num_layers_) {
    throw std::invalid_argument(
        "the model's layers changed (insertBlocks) after this cache was made: make a new cache");
  }
  const int64_t seq = static_cast<int64_t>(ids.size());
  if (seq == 0) throw std::invalid_argument("step: no token ids");
  for (size_t i = 0; i < ids.size(); ++i) {
    if (ids[i] < 0 || ids[i] >= spec.vocab_size) {
      throw std::invalid_argument("token id " + std::to_string(ids[i]) + " at position " + std::to_string(i) +
                                  " is outside the vocabulary (0.." + std::to_string(spec.vocab_size - 1) + ")");
    }
  }
  const int64_t past = length_;
  Reserve(state, past + seq);
  auto id_tensor =
      torch::from_blob(const_cast<int32_t*>(ids.data()), {1, seq}, torch::kInt32).to(state.device, torch::kInt64);
  auto x = As(module->model->embed_tokens->forward(id_tensor), state.dtype);
  const auto cos = cos_.narrow(0, past, seq);
  const auto sin = sin_.narrow(0, past, seq);

  // Per window (0 = full causal): the first visible key and, when some query must not see some key, the mask.
  const int64_t groups = spec.num_heads / spec.num_kv_heads;
  std::map<int64_t, std::pair<int64_t, torch::Tensor>> masks;
  for (const int64_t window : spec.sliding_windows) {
    if (masks.count(window)) continue;
    const int64_t start = window > 0 ? std::max<int64_t>(0, past + 1 - window) : 0;
    torch::Tensor mask;
    if (seq > 1) {
      const auto opts = torch::TensorOptions().device(state.device).dtype(torch::kInt64);
      const auto i = torch::arange(past, past + seq, opts).unsqueeze(1);
      const auto j = torch::arange(start, past + seq, opts).unsqueeze(0);
      auto keep = j <= i;
      if (window > 0) keep = keep.logical_and((i - j) < window);
      mask = torch::zeros({seq, past + seq - start}, torch::TensorOptions().device(state.device).dtype(state.dtype))
                 .masked_fill(keep.logical_not(), -std::numeric_limits<double>::infinity())
                 .repeat({groups, 1})
                 .unsqueeze(0);
    }
    masks[window] = {start, mask};
  }

  for (size_t l = 0; l < module->model->layer_list.size(); ++l) {
    auto& layer = module->model->layer_list[l];
    const auto& [start, mask] = masks.at(layer->self_attn->sliding_window);
    const auto h = x + Attention(*layer->self_attn, layer->input_layernorm->forward(x), cos, sin, l, past, mask, start);
    x = h + layer->mlp->forward(layer->post_attention_layernorm->forward(h));
  }
  length_ = past + seq;
  if (!all_logits) x = x.narrow(1, seq - 1, 1);
  const auto logits = module->Logits(module->model->norm->forward(x)).to(torch::kCPU, torch::kFloat32).contiguous();
  return all_logits ? logits.view({seq, spec.vocab_size}) : logits.view({spec.vocab_size});
}

// ---- N-API ----

Napi::Function NativeKvCache::Define(Napi::Env env) {
  return DefineClass(env, "NativeKvCache",
                     {
                         InstanceMethod("step", &NativeKvCache::Step),
                         InstanceMethod("truncate", &NativeKvCache::Truncate),
                         InstanceAccessor("length", &NativeKvCache::GetLength, nullptr),
                         InstanceMethod("dispose", &NativeKvCache::Dispose),
                     });
}

const napi_type_tag NativeKvCache::kTypeTag = {0x6c6c616d6170726fULL, 0x4b76436163686521ULL};

// new NativeKvCache(model: NativeModel)
NativeKvCache::NativeKvCache(const Napi::CallbackInfo& info) : Napi::ObjectWrap<NativeKvCache>(info) {
  Napi::Env env = info.Env();
  NativeModel* model = js::Unwrap<NativeModel>(info[0], "model");
  cache_ = std::make_shared<KvCacheState>(model->State(env));
  js::TagAs<NativeKvCache>(info);
}

NativeKvCache::~NativeKvCache() {
  if (reported_bytes_ != 0) Napi::MemoryManagement::AdjustExternalMemory(Env(), -reported_bytes_);
}

void NativeKvCache::ReportMemory(Napi::Env env, int64_t bytes) {
  Napi::MemoryManagement::AdjustExternalMemory(env, bytes - reported_bytes_);
  reported_bytes_ = bytes;
}

// step(ids: Int32Array, allLogits: boolean) -> Float32Array ([vocab], or [ids.length * vocab])
Napi::Value NativeKvCache::Step(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!cache_) ThrowJs(env, "this cache was disposed", "LLAMAPRO_DISPOSED");
  if (!info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != napi_int32_array) {
    js::TypeError(env, "ids must be an Int32Array");
  }
  const auto array = info[0].As<Napi::Int32Array>();
  if (array.ElementLength() == 0 || array.ElementLength() > static_cast<size_t>(kMaxCacheLength)) {
    js::TypeError(env, "ids must hold 1.." + std::to_string(kMaxCacheLength) + " token ids");
  }
  auto ids = std::make_shared<std::vector<int32_t>>(array.Data(), array.Data() + array.ElementLength());
  const bool all = js::Bool(info[1], "allLogits");
  auto cache = cache_;
  auto state = cache->model.lock();
  if (!state) ThrowJs(env, "the model of this cache was disposed", "LLAMAPRO_DISPOSED");
  bool expected = false;
  if (!cache->busy.compare_exchange_strong(expected, true)) {
    ThrowJs(env, "step: this cache is busy with a previous step (await it first)", "LLAMAPRO_BUSY");
  }
  auto logits = std::make_shared<torch::Tensor>();
  auto bytes = std::make_shared<int64_t>(0);
  return RunAsync(
      Value(), "llamapro.kvCacheStep",
      [cache, state, ids, all, logits, bytes] {
        struct Release {
          KvCacheState& c;
          ~Release() { c.busy = false; }
        } release{*cache};
        std::lock_guard<std::mutex> lock(state->mutex);
        *logits = cache->Step(*state, *ids, all);
        *bytes = cache->Bytes();
      },
      [this, logits, bytes](Napi::Env env) -> Napi::Value {
        if (cache_) ReportMemory(env, *bytes);
        const size_t n = static_cast<size_t>(logits->numel());
        auto out = Napi::Float32Array::New(env, n);
        std::memcpy(out.Data(), logits->data_ptr<float>(), n * sizeof(float));
        logits->reset();
        return out;
      });
}

Napi::Value NativeKvCache::Truncate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!cache_) ThrowJs(env, "this cache was disposed", "LLAMAPRO_DISPOSED");
  if (cache_->busy) ThrowJs(env, "truncate: this cache is busy with a step (await it first)", "LLAMAPRO_BUSY");
  try {
    cache_->Truncate(js::Integer(info[0], "length"));
  } catch (const std::invalid_argument& e) {
    ThrowJs(env, e.what(), "LLAMAPRO_ARG");
  }
  return env.Undefined();
}

Napi::Value NativeKvCache::GetLength(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), cache_ ? static_cast<double>(cache_->Length()) : 0.0);
}

Napi::Value NativeKvCache::Dispose(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (cache_) {
    ReportMemory(env, 0);
    cache_.reset();  // a running step keeps its own reference until it finishes
  }
  return env.Undefined();
}

}  // namespace llamapro
