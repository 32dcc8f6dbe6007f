// The LLaMA decoder as LibTorch modules whose parameter names are Hugging Face's
// (model.layers.3.self_attn.q_proj.weight, ...), registered in transformers' state_dict order.
//
// The math follows transformers' LlamaForCausalLM: pre-norm blocks; RMSNorm computed in float32 and cast back
// before the weight multiply; rotary embeddings on the two halves of each head; grouped-query attention;
// SiLU-gated MLP. Qwen2 (q/k/v biases) and Mistral (head_dim, sliding window) are the same modules with options.
//
// Parameters may live in different dtypes (float32 master weights for the trainable ones, the checkpoint's
// dtype for the frozen ones): every layer computes in the dtype of the activations it is given.
#pragma once
#include <torch/torch.h>

#include <map>
#include <tuple>
#include <vector>

#include "model_spec.h"

namespace llamapro {

// What LoRA's dropout needs to know about the current pass; one per model, shared by its LoRA layers.
struct LoraRuntime {
  bool training = false;  // dropout applies only inside a training step
  int64_t pass = 0;       // bumped by every training step: a layer recomputed in backward reuses its pass's mask
};

// A dense layer whose parameters are allocated, not initialised: they are loaded from a checkpoint or set by
// InitRandom. (torch::nn::Linear would spend seconds on a random init that is overwritten at once.)
//
// With a LoRA adapter (AddLora, see lora.h) it computes PEFT's LoraLayer: W x + b + scale * B(A(dropout(x))),
// its factors registered as the submodules lora_A and lora_B, so their parameters are named
// <module>.lora_A.weight and <module>.lora_B.weight (PEFT's saved names without the "base_model.model." prefix).
class LinearImpl : public torch::nn::Module {
 public:
  LinearImpl(int64_t in_features, int64_t out_features, bool with_bias, const torch::TensorOptions& options);
  torch::Tensor forward(const torch::Tensor& x);
  torch::Tensor weight;
  torch::Tensor bias;

  // LoRA: both factors null when the layer has no adapter.
  std::shared_ptr<LinearImpl> lora_A, lora_B;
  double lora_scale = 0.0;
  double lora_dropout = 0.0;
  std::shared_ptr<const LoraRuntime> lora_runtime;
  // The dropout mask of the current training pass (kept so that activation checkpointing's recompute draws the
  // same one); freed after each step.
  torch::Tensor dropout_mask;
  int64_t dropout_mask_pass = -1;
};
TORCH_MODULE(Linear);

class RMSNormImpl : public torch::nn::Module {
 public:
  RMSNormImpl(int64_t size, double eps, const torch::TensorOptions& options);
  torch::Tensor forward(const torch::Tensor& x);
  torch::Tensor weight;
  double eps;
};
TORCH_MODULE(RMSNorm);

class EmbeddingImpl : public torch::nn::Module {
 public:
  EmbeddingImpl(int64_t count, int64_t size, const torch::TensorOptions& options);
  torch::Tensor forward(const torch::Tensor& ids);
  torch::Tensor weight;
};
TORCH_MODULE(Embedding);

// Per-forward tables shared by every layer: rotary cos/sin for positions [0, T) and the attention masks.
struct AttentionContext {
  torch::Tensor cos;  // [T, head_dim], compute dtype
  torch::Tensor sin;  // with the first half negated (see ApplyRotary)
  // Additive masks (0 or -inf) keyed by sliding window (0 = plain causal), shaped [1, G*T, T] for the grouped
  // attention of LibTorch 1.x; boolean [T, T] keep-masks for scaled_dot_product_attention on 2.x.
  std::map<int64_t, torch::Tensor> masks;
  // Packed rows (see RowPlan): when defined, hidden states are [N, hidden], the positions `rows` (flat indices
  // b * seq + t, ascending) of the [batch, seq] grid, and attention scatters q, k and v back onto that grid.
  torch::Tensor rows;
  torch::Tensor pad_rows;  // the grid positions not in `rows` (zeroed: softmax gives them weight 0, and 0 * NaN is NaN)
  int64_t batch = 0;
  int64_t seq = 0;
};

// Which rows a loss needs (ShiftedCrossEntropy builds it from the labels; undefined tensors: all rows).
// - rows: the grid positions every layer computes. A position after the last one whose prediction is counted is
//   read by nothing the loss depends on (attention is causal), so padding is left out — when that saves enough to
//   pay for scattering q, k, v onto the grid in each layer.
// - query_rows: the rows (indices into the layer's input rows) whose output the last layer computes: the counted
//   positions. Below it, every position is a key or value of a later one; in the last layer only the counted rows'
//   queries, attention outputs and MLP are read.
struct RowPlan {
  torch::Tensor rows;
  torch::Tensor pad_rows;  // with rows: the others
  torch::Tensor query_rows;
};

class AttentionImpl : public torch::nn::Module {
 public:
  AttentionImpl(const ModelSpec& spec, int64_t sliding_window, const torch::TensorOptions& options);
  // `query_rows` (optional, indices into x's rows): the output holds only those rows, [len(query_rows), hidden].
  torch::Tensor forward(const torch::Tensor& x, const AttentionContext& context, const torch::Tensor& query_rows = {});
  Linear q_proj{nullptr}, k_proj{nullptr}, v_proj{nullptr}, o_proj{nullptr};
  int64_t num_heads, num_kv_heads, head_dim, sliding_window;
};
TORCH_MODULE(Attention);

class MlpImpl : public torch::nn::Module {
 public:
  MlpImpl(const ModelSpec& spec, const torch::TensorOptions& options);
  torch::Tensor forward(const torch::Tensor& x);
  Linear gate_proj{nullptr}, up_proj{nullptr}, down_proj{nullptr};
};
TORCH_MODULE(Mlp);

class DecoderLayerImpl : public torch::nn::Module {
 public:
  DecoderLayerImpl(const ModelSpec& spec, int64_t sliding_window, const torch::TensorOptions& options);
  torch::Tensor forward(const torch::Tensor& x, const AttentionContext& context, const torch::Tensor& query_rows = {});
  Attention self_attn{nullptr};
  Mlp mlp{nullptr};
  RMSNorm input_layernorm{nullptr}, post_attention_layernorm{nullptr};
};
TORCH_MODULE(DecoderLayer);

// transformers' LlamaModel: registered as "model" inside the causal LM.
class DecoderImpl : public torch::nn::Module {
 public:
  DecoderImpl(const ModelSpec& spec, const torch::TensorOptions& options);
  Embedding embed_tokens{nullptr};
  torch::nn::ModuleList layers{nullptr};
  RMSNorm norm{nullptr};
  std::vector<DecoderLayer> layer_list;  // typed view of `layers`
};
TORCH_MODULE(Decoder);

// transformers' LlamaForCausalLM.
class CausalLMImpl : public torch::nn::Module {
 public:
  CausalLMImpl(const ModelSpec& spec, const torch::TensorOptions& options);

  // Final hidden states (after the last norm) for ids [B, T], computed in `compute_dtype`: [B, T, hidden], or with
  // a plan whose query_rows are set, [len(query_rows), hidden] for those rows only.
  torch::Tensor Hidden(const torch::Tensor& ids, c10::ScalarType compute_dtype, const RowPlan& plan = {});
  // Logits for hidden states [.., hidden], in the hidden states' dtype.
  torch::Tensor Logits(const torch::Tensor& hidden);
  const torch::Tensor& OutputWeight() const;

  // Inserts a copy of layer positions[i] right after it (positions ascending, original indices); each copy's
  // o_proj and down_proj (weights and biases) are zero, so it is an identity map. Returns the new indices.
  std::vector<int64_t> InsertIdentityBlocks(const std::vector<int64_t>& positions);

  ModelSpec spec;
  // Recompute decoder layers in backward instead of keeping their activations (see activation_checkpoint.h).
  // On by default, as in LLaMA-Factory, and like LLaMA-Factory only for the layers that hold a trainable parameter:
  // a frozen layer above the lowest trainable one keeps what its input gradient needs. With
  // checkpoint_frozen_layers those are recomputed as well (least memory; one more forward of each of them).
  bool gradient_checkpointing = true;
  bool checkpoint_frozen_layers = false;
  Decoder model{nullptr};
  Linear lm_head{nullptr};
  std::shared_ptr<LoraRuntime> lora_runtime = std::make_shared<LoraRuntime>();

 private:
  AttentionContext MakeContext(int64_t seq_len, c10::ScalarType dtype, const torch::Device& device);
  // Rotary tables cached for the longest sequence seen so far, per (device, dtype).
  std::map<std::tuple<std::string, int>, std::pair<torch::Tensor, torch::Tensor>> rotary_cache_;
  // Attention masks per (device, dtype, window, seq_len), at most kMaxCachedMasks of them.
  static constexpr size_t kMaxCachedMasks = 16;
  std::map<std::tuple<std::string, int, int64_t, int64_t>, torch::Tensor> mask_cache_;
};
TORCH_MODULE(CausalLM);

// Rotary inverse frequencies [head_dim / 2] (float32) for the spec's rope type, as transformers computes them.
torch::Tensor RotaryInverseFrequencies(const ModelSpec& spec);

}  // namespace llamapro
