// The benchmarks' model shape: a Llama with head_dim 64, one KV head per query head and the
// SwiGLU width Llama uses (8/3 of hidden, rounded down to a multiple of 64).
#pragma once

#include "polytune/engine/model_config.h"

namespace polytune::bench {

inline engine::ModelConfig BenchModelConfig(int64_t hidden, int64_t layers, int64_t vocab) {
  engine::ModelConfig mc;
  mc.hidden_size = hidden;
  mc.num_hidden_layers = layers;
  mc.num_attention_heads = hidden / 64;
  mc.num_key_value_heads = hidden / 64;
  mc.head_dim = 64;
  mc.intermediate_size = hidden * 8 / 3 / 64 * 64;
  mc.vocab_size = vocab;
  mc.max_position_embeddings = 4096;
  return mc;
}

}  // namespace polytune::bench
