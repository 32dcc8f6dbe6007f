// Incremental decoding for generation: a key/value cache over one loaded model.
//
// The cache reuses the training modules (llama_modules.h) layer by layer: the same projections, norms, rotary
// tables and MLPs, with an attention that appends this step's keys and values to the cache and attends over it.
// One sequence (batch 1) per cache. The first Step() is the prefill (the whole prompt at once); later calls add
// one or a few tokens each. Sliding-window layers see only the last `window` keys, as the training mask does;
// every position is kept (as transformers' DynamicCache), so memory grows with the sequence, in chunks that double.
#pragma once
#include <napi.h>
#include <torch/torch.h>

#include <atomic>
#include <memory>
#include <vector>

#include "model_state.h"

namespace llamapro {

class KvCacheState {
 public:
  explicit KvCacheState(const std::shared_ptr<ModelState>& model);

  // Appends ids (int64 [T], CPU) at positions [Length(), Length() + T) and returns float32 logits on the CPU:
  // [T, vocab] when `all_logits`, else [vocab] for the last position. The caller holds the model's mutex.
  torch::Tensor Step(ModelState& model, const std::vector<int32_t>& ids, bool all_logits);
  // Forgets positions >= length (a shared prompt prefix is kept; the rest is recomputed by the next Step).
  void Truncate(int64_t length);
  int64_t Length() const { return length_; }
  int64_t Bytes() const;

  std::weak_ptr<ModelState> model;
  std::atomic<bool> busy{false};

 private:
  void Reserve(ModelState& model, int64_t needed);
  torch::Tensor Attention(AttentionImpl& attn, const torch::Tensor& x, const torch::Tensor& cos,
                          const torch::Tensor& sin, size_t layer, int64_t past, const torch::Tensor& mask,
                          int64_t key_start);

  int64_t num_layers_ = 0;
  int64_t length_ = 0;
  int64_t capacity_ = 0;
  std::vector<torch::Tensor> keys_;    // per layer [kv_heads, capacity, head_dim]
  std::vector<torch::Tensor> values_;  // same
  torch::Tensor cos_, sin_;            // rotary tables [capacity, head_dim] as AttentionContext holds them
};

class NativeKvCache : public Napi::ObjectWrap<NativeKvCache> {
 public:
  // Tags every NativeKvCache object, so that js::Unwrap (js_unwrap.h) refuses it where another class is expected.
  static const napi_type_tag kTypeTag;
  static constexpr const char* kClassName = "NativeKvCache";
  static Napi::Function Define(Napi::Env env);
  explicit NativeKvCache(const Napi::CallbackInfo& info);
  ~NativeKvCache() override;

 private:
  Napi::Value Step(const Napi::CallbackInfo& info);
  Napi::Value Truncate(const Napi::CallbackInfo& info);
  Napi::Value GetLength(const Napi::CallbackInfo& info);
  Napi::Value Dispose(const Napi::CallbackInfo& info);
  void ReportMemory(Napi::Env env, int64_t bytes);

  std::shared_ptr<KvCacheState> cache_;
  int64_t reported_bytes_ = 0;
};

}  // namespace llamapro
