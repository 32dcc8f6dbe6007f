#include "llama_modules.h"

#include <cmath>
#include <limits>
#include <sstream>

#include "activation_checkpoint.h"
#include "causal_attention.h"
#include "cpu_gemm.h"
#include "fused_ops.h"
#include "torch_compat.h"

namespace llamapro {

LinearImpl::LinearImpl(int64_t in_features, int64_t out_features, bool with_bias, const torch::TensorOptions& options) {
  weight = register_parameter("weight", torch::empty({out_features, in_features}, options));
  if (with_bias) bias = register_parameter("bias", torch::empty({out_features}, options));
}

namespace {
// Casts only when needed: even a no-op .to() is a dispatch, and the tiny models are dispatch-bound.
inline torch::Tensor As(const torch::Tensor& t, c10::ScalarType dtype) {
  return t.scalar_type() == dtype ? t : t.to(dtype);
}
}  // namespace

torch::Tensor LinearImpl::forward(const torch::Tensor& x) {
  const auto dtype = x.scalar_type();
  auto out = Project(x, As(weight, dtype), bias.defined() ? As(bias, dtype) : torch::Tensor());
  if (!lora_A) return out;
  // PEFT: result + lora_B(lora_A(dropout(x))) * scaling, the adapter computed in the activations' dtype.
  torch::Tensor h = x;
  if (lora_dropout > 0.0 && lora_runtime && lora_runtime->training) {
    if (dropout_mask_pass != lora_runtime->pass || !dropout_mask.defined() || dropout_mask.sizes() != x.sizes()) {
      torch::NoGradGuard no_grad;
      dropout_mask =
          torch::empty(x.sizes(), x.options().dtype(torch::kFloat32)).bernoulli_(1.0 - lora_dropout).to(torch::kBool);
      dropout_mask_pass = lora_runtime->pass;
    }
    h = x.masked_fill(dropout_mask.logical_not(), 0.0) * (1.0 / (1.0 - lora_dropout));
  }
  return out + lora_B->forward(lora_A->forward(h)) * lora_scale;
}

RMSNormImpl::RMSNormImpl(int64_t size, double eps_, const torch::TensorOptions& options) : eps(eps_) {
  weight = register_parameter("weight", torch::empty({size}, options));
}

torch::Tensor RMSNormImpl::forward(const torch::Tensor& x) { return RmsNorm(x, weight, eps); }

EmbeddingImpl::EmbeddingImpl(int64_t count, int64_t size, const torch::TensorOptions& options) {
  weight = register_parameter("weight", torch::empty({count, size}, options));
}

torch::Tensor EmbeddingImpl::forward(const torch::Tensor& ids) { return at::embedding(weight, ids); }

namespace {

// rotate_half(x) * sin == roll(x, D/2) * [-sin_lo, sin_hi]: the sign lives in the precomputed table.
torch::Tensor ApplyRotary(const torch::Tensor& x, const AttentionContext& context) {
  return Rotary(x, context.cos, context.sin);
}

}  // namespace

AttentionImpl::AttentionImpl(const ModelSpec& spec, int64_t window, const torch::TensorOptions& options)
    : num_heads(spec.num_heads), num_kv_heads(spec.num_kv_heads), head_dim(spec.head_dim), sliding_window(window) {
  const int64_t h = spec.hidden_size;
  q_proj = register_module("q_proj", Linear(h, num_heads * head_dim, spec.qkv_bias, options));
  k_proj = register_module("k_proj", Linear(h, num_kv_heads * head_dim, spec.qkv_bias, options));
  v_proj = register_module("v_proj", Linear(h, num_kv_heads * head_dim, spec.qkv_bias, options));
  o_proj = register_module("o_proj", Linear(num_heads * head_dim, h, spec.o_bias, options));
}

torch::Tensor AttentionImpl::forward(const torch::Tensor& x, const AttentionContext& context,
                                     const torch::Tensor& query_rows) {
  const bool packed = context.rows.defined();
  const bool subset = query_rows.defined();
  const int64_t batch = packed ? context.batch : x.size(0);
  const int64_t seq = packed ? context.seq : x.size(1);
  // Rows on the [batch * seq] grid: a projection of some rows goes back onto the grid (zeros elsewhere: those
  // positions come after every position that reads them, so the causal mask hides them); all rows: a view.
  const auto x_rows = x.reshape({-1, x.size(-1)});
  const auto q_grid_rows = subset ? (packed ? context.rows.index_select(0, query_rows) : query_rows) : context.rows;
  const auto to_grid = [&](const torch::Tensor& t, const torch::Tensor& grid_rows) {
    if (!grid_rows.defined()) return t.view({batch, seq, -1});
    if (grid_rows.is_same(context.rows)) {  // the packed rows: zero only the few others
      auto grid = at::empty({batch * seq, t.size(-1)}, t.options());
      if (context.pad_rows.numel() > 0) grid.index_fill_(0, context.pad_rows, 0);
      return grid.index_copy_(0, grid_rows, t).view({batch, seq, -1});
    }
    return at::zeros({batch * seq, t.size(-1)}, t.options()).index_copy_(0, grid_rows, t).view({batch, seq, -1});
  };
  auto q = to_grid(q_proj->forward(subset ? x_rows.index_select(0, query_rows) : x_rows), q_grid_rows)
               .view({batch, seq, num_heads, head_dim})
               .transpose(1, 2);
  auto k = to_grid(k_proj->forward(x_rows), context.rows).view({batch, seq, num_kv_heads, head_dim}).transpose(1, 2);
  auto v = to_grid(v_proj->forward(x_rows), context.rows).view({batch, seq, num_kv_heads, head_dim}).transpose(1, 2);
  q = ApplyRotary(q, context);
  k = ApplyRotary(k, context);
  const auto& mask = context.masks.at(sliding_window);
  torch::Tensor merged;  // [B, T, H * D]: the heads side by side, as o_proj reads them
#if LLAMAPRO_HAVE_SDPA
  merged = ScaledDotProductAttention(q, k, v, sliding_window == 0 ? torch::Tensor() : mask)
               .transpose(1, 2)
               .reshape({batch, seq, num_heads * head_dim});
#else
  const double scale = 1.0 / std::sqrt(static_cast<double>(head_dim));
  if (CausalAttentionApplies(q, k, v)) {
    merged = CausalAttention(q, k, v, sliding_window, scale);  // the mask's causal window, computed in place
  } else {
    // Grouped-query attention without copying K and V: the G query heads that share a KV head are stacked along
    // the sequence axis, so one batched matmul per KV head serves them all (head h = kv * G + g, as repeat_kv).
    const int64_t groups = num_heads / num_kv_heads;
    const auto q_grouped = q.reshape({batch * num_kv_heads, groups * seq, head_dim});
    const auto k_flat = k.reshape({batch * num_kv_heads, seq, head_dim});
    const auto v_flat = v.reshape({batch * num_kv_heads, seq, head_dim});
    // One kernel for scale, QK^T and the causal mask.
    auto scores = at::baddbmm(mask, q_grouped, k_flat.transpose(1, 2), /*beta=*/1.0, /*alpha=*/scale);
    const auto dtype = scores.scalar_type();
    auto probs =
        dtype == torch::kFloat32 ? at::softmax(scores, -1) : at::softmax(scores, -1, torch::kFloat32).to(dtype);
    merged = at::bmm(probs, v_flat)
                 .view({batch, num_heads, seq, head_dim})
                 .transpose(1, 2)
                 .reshape({batch, seq, num_heads * head_dim});
  }
#endif
  if (!q_grid_rows.defined()) return o_proj->forward(merged);
  return o_proj->forward(merged.view({batch * seq, num_heads * head_dim}).index_select(0, q_grid_rows));
}

MlpImpl::MlpImpl(const ModelSpec& spec, const torch::TensorOptions& options) {
  const int64_t h = spec.hidden_size;
  const int64_t f = spec.intermediate_size;
  gate_proj = register_module("gate_proj", Linear(h, f, spec.mlp_bias, options));
  up_proj = register_module("up_proj", Linear(h, f, spec.mlp_bias, options));
  down_proj = register_module("down_proj", Linear(f, h, spec.mlp_bias, options));
}

torch::Tensor MlpImpl::forward(const torch::Tensor& x) {
  return down_proj->forward(SwiGlu(gate_proj->forward(x), up_proj->forward(x)));
}

DecoderLayerImpl::DecoderLayerImpl(const ModelSpec& spec, int64_t window, const torch::TensorOptions& options) {
  self_attn = register_module("self_attn", Attention(spec, window, options));
  mlp = register_module("mlp", Mlp(spec, options));
  input_layernorm = register_module("input_layernorm", RMSNorm(spec.hidden_size, spec.rms_norm_eps, options));
  post_attention_layernorm =
      register_module("post_attention_layernorm", RMSNorm(spec.hidden_size, spec.rms_norm_eps, options));
}

torch::Tensor DecoderLayerImpl::forward(const torch::Tensor& x, const AttentionContext& context,
                                        const torch::Tensor& query_rows) {
  const auto residual = query_rows.defined() ? x.reshape({-1, x.size(-1)}).index_select(0, query_rows) : x;
  const auto h = residual + self_attn->forward(input_layernorm->forward(x), context, query_rows);
  return h + mlp->forward(post_attention_layernorm->forward(h));
}

DecoderImpl::DecoderImpl(const ModelSpec& spec, const torch::TensorOptions& options) {
  embed_tokens = register_module("embed_tokens", Embedding(spec.vocab_size, spec.hidden_size, options));
  layers = register_module("layers", torch::nn::ModuleList());
  for (int64_t i = 0; i < spec.num_layers; ++i) {
    layer_list.push_back(DecoderLayer(spec, spec.sliding_windows.at(static_cast<size_t>(i)), options));
    layers->push_back(layer_list.back());
  }
  norm = register_module("norm", RMSNorm(spec.hidden_size, spec.rms_norm_eps, options));
}

CausalLMImpl::CausalLMImpl(const ModelSpec& spec_, const torch::TensorOptions& options) : spec(spec_) {
  model = register_module("model", Decoder(spec, options));
  if (!spec.tie_word_embeddings) {
    lm_head = register_module("lm_head", Linear(spec.hidden_size, spec.vocab_size, false, options));
  }
}

torch::Tensor RotaryInverseFrequencies(const ModelSpec& spec) {
  const int64_t dim = spec.head_dim;
  auto inv_freq = 1.0 / torch::pow(spec.rope.theta, torch::arange(0, dim, 2, torch::kInt64).to(torch::kFloat32) /
                                                        static_cast<double>(dim));
  if (spec.rope.type == "linear") return inv_freq / spec.rope.factor;
  if (spec.rope.type == "llama3") {
    const double factor = spec.rope.factor;
    const double low = spec.rope.low_freq_factor;
    const double high = spec.rope.high_freq_factor;
    const double old_len = spec.rope.original_max_position_embeddings;
    const double low_freq_wavelen = old_len / low;
    const double high_freq_wavelen = old_len / high;
    const auto wavelen = 2.0 * M_PI / inv_freq;
    auto scaled = torch::where(wavelen > low_freq_wavelen, inv_freq / factor, inv_freq);
    const auto smooth = (old_len / wavelen - low) / (high - low);
    const auto smoothed = (1 - smooth) * scaled / factor + smooth * scaled;
    const auto medium = (wavelen >= high_freq_wavelen).logical_and(wavelen <= low_freq_wavelen);
    return torch::where(medium, smoothed, scaled);
  }
  return inv_freq;
}

AttentionContext CausalLMImpl::MakeContext(int64_t seq_len, c10::ScalarType dtype, const torch::Device& device) {
  AttentionContext context;
  const auto key = std::make_tuple(device.str(), static_cast<int>(dtype));
  auto found = rotary_cache_.find(key);
  if (found == rotary_cache_.end() || found->second.first.size(0) < seq_len) {
    torch::NoGradGuard no_grad;
    const int64_t length = std::max<int64_t>(seq_len, 128);
    const auto inv_freq = RotaryInverseFrequencies(spec).to(device);
    const auto positions = torch::arange(length, torch::TensorOptions().dtype(torch::kFloat32).device(device));
    const auto freqs = torch::outer(positions, inv_freq);
    const auto emb = torch::cat({freqs, freqs}, -1);
    const auto sin = freqs.sin();
    rotary_cache_[key] = {emb.cos().to(dtype), torch::cat({-sin, sin}, -1).to(dtype)};
    found = rotary_cache_.find(key);
  }
  context.cos = found->second.first.narrow(0, 0, seq_len);
  context.sin = found->second.second.narrow(0, 0, seq_len);

  const int64_t groups = spec.num_heads / spec.num_kv_heads;
  for (const int64_t window : spec.sliding_windows) {
    if (context.masks.count(window)) continue;
#if LLAMAPRO_HAVE_SDPA
    if (window == 0) {  // is_causal=true needs no mask
      context.masks[window] = torch::Tensor();
      continue;
    }
#endif
    const auto mask_key = std::make_tuple(device.str(), static_cast<int>(dtype), window, seq_len);
    auto cached = mask_cache_.find(mask_key);
    if (cached == mask_cache_.end()) {
      // One mask per distinct sequence length: with variable-length batches that set grows, so it is bounded
      // (a rebuild costs one [T, T] fill, far less than the forward pass that uses it).
      if (mask_cache_.size() >= kMaxCachedMasks) mask_cache_.clear();
      torch::NoGradGuard no_grad;
      const auto options = torch::TensorOptions().device(device);
      const auto i = torch::arange(seq_len, options.dtype(torch::kInt64)).unsqueeze(1);
      const auto j = torch::arange(seq_len, options.dtype(torch::kInt64)).unsqueeze(0);
      auto keep = j <= i;  // causal; with a window, key j is visible to query i while i - j < window
      if (window > 0) keep = keep.logical_and((i - j) < window);
#if LLAMAPRO_HAVE_SDPA
      torch::Tensor mask = keep;
#else
      auto additive = torch::zeros({seq_len, seq_len}, options.dtype(dtype))
                          .masked_fill(keep.logical_not(), -std::numeric_limits<double>::infinity());
      torch::Tensor mask = additive.repeat({groups, 1}).unsqueeze(0);  // [1, G*T, T]
#endif
      cached = mask_cache_.emplace(mask_key, mask).first;
    }
    context.masks[window] = cached->second;
  }
  (void)groups;
  return context;
}

torch::Tensor CausalLMImpl::Hidden(const torch::Tensor& ids, c10::ScalarType compute_dtype, const RowPlan& plan) {
  const bool packed = plan.rows.defined();
  auto x = model->embed_tokens->forward(packed ? ids.reshape({-1}).index_select(0, plan.rows) : ids).to(compute_dtype);
  auto context = MakeContext(ids.size(1), compute_dtype, x.device());
  if (packed) {
    context.rows = plan.rows;
    context.pad_rows = plan.pad_rows;
    context.batch = ids.size(0);
    context.seq = ids.size(1);
  }
  const size_t count = model->layer_list.size();
  for (size_t i = 0; i < count; ++i) {
    auto& layer = model->layer_list[i];
    const torch::Tensor query_rows = i + 1 == count ? plan.query_rows : torch::Tensor();
    const bool recompute =
        gradient_checkpointing && LayerRecordsGraph(*layer, x) && (checkpoint_frozen_layers || LayerTrains(*layer));
    x = recompute ? CheckpointedLayerForward(*layer, x, context, query_rows) : layer->forward(x, context, query_rows);
  }
  return model->norm->forward(x);
}

const torch::Tensor& CausalLMImpl::OutputWeight() const {
  return spec.tie_word_embeddings ? model->embed_tokens->weight : lm_head->weight;
}

torch::Tensor CausalLMImpl::Logits(const torch::Tensor& hidden) {
  return Project(hidden, As(OutputWeight(), hidden.scalar_type()), torch::Tensor());
}

std::vector<int64_t> CausalLMImpl::InsertIdentityBlocks(const std::vector<int64_t>& positions) {
  torch::NoGradGuard no_grad;
  const auto& old_layers = model->layer_list;
  const int64_t old_count = static_cast<int64_t>(old_layers.size());
  for (size_t i = 0; i < positions.size(); ++i) {
    if (positions[i] < 0 || positions[i] >= old_count) {
      std::ostringstream message;
      message << "insert position " << positions[i] << " is out of range: the model has " << old_count
              << " layers (valid: 0.." << old_count - 1 << ")";
      throw std::invalid_argument(message.str());
    }
    if (i > 0 && positions[i] <= positions[i - 1]) {
      throw std::invalid_argument("insert positions must be strictly ascending");
    }
  }
  std::vector<DecoderLayer> new_list;
  std::vector<int64_t> new_windows;
  std::vector<int64_t> inserted;
  size_t next = 0;
  for (int64_t i = 0; i < old_count; ++i) {
    new_list.push_back(old_layers[static_cast<size_t>(i)]);
    new_windows.push_back(spec.sliding_windows[static_cast<size_t>(i)]);
    if (next < positions.size() && positions[next] == i) {
      const auto& source = old_layers[static_cast<size_t>(i)];
      const auto options = torch::TensorOptions()
                               .dtype(source->input_layernorm->weight.scalar_type())
                               .device(source->input_layernorm->weight.device());
      DecoderLayer copy(spec, spec.sliding_windows[static_cast<size_t>(i)], options);
      const auto source_params = source->named_parameters(true);
      for (auto& item : copy->named_parameters(true)) {
        const auto& from = source_params[item.key()];
        item.value().set_data(from.detach().clone());
        item.value().set_requires_grad(false);
      }
      for (Linear* zeroed : {&copy->self_attn->o_proj, &copy->mlp->down_proj}) {
        (*zeroed)->weight.zero_();
        if ((*zeroed)->bias.defined()) (*zeroed)->bias.zero_();
      }
      inserted.push_back(static_cast<int64_t>(new_list.size()));
      new_list.push_back(copy);
      new_windows.push_back(spec.sliding_windows[static_cast<size_t>(i)]);
      ++next;
    }
  }
  auto new_layers = torch::nn::ModuleList();
  for (auto& layer : new_list) new_layers->push_back(layer);
  model->layers = model->replace_module("layers", new_layers);
  model->layer_list = std::move(new_list);
  spec.num_layers = static_cast<int64_t>(model->layer_list.size());
  spec.sliding_windows = std::move(new_windows);
  mask_cache_.clear();
  return inserted;
}

}  // namespace llamapro
