// The decoder's shape, normalised by lib/checkpoint/config.ts from config.json and passed in as plain values.
// Its fields and limits are declared once in lib/checkpoint/model-contract.ts; model_contract.cc reads them.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace llamapro {

struct RopeSpec {
  std::string type = "default";  // default | linear | llama3
  double theta = 10000.0;
  double factor = 1.0;
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  double original_max_position_embeddings = 8192.0;
};

struct ModelSpec {
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_layers = 0;
  int64_t num_heads = 0;
  int64_t num_kv_heads = 0;
  int64_t head_dim = 0;
  double rms_norm_eps = 1e-6;
  RopeSpec rope;
  bool qkv_bias = false;
  bool o_bias = false;
  bool mlp_bias = false;
  bool tie_word_embeddings = false;
  std::vector<int64_t> sliding_windows;  // per layer; 0 = full causal attention
};

}  // namespace llamapro
