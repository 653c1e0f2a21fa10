#include "engine/window_runner.h"

#include <algorithm>
#include <numeric>

namespace tidal {

namespace {

constexpr int kBlockSize = 16;

}  // namespace

WindowRunner::WindowRunner(const Model& model, Backend& backend, int max_window)
    : vocab_(model.config.vocab_size),
      forward_(model, backend),
      cache_(KvCacheShape{model.config.n_layers, model.config.n_kv_heads, model.config.head_dim, kBlockSize,
                          (max_window + kBlockSize - 1) / kBlockSize}),
      block_table_(size_t(cache_.shape().num_blocks)) {
  std::iota(block_table_.begin(), block_table_.end(), 0);
}

const float* WindowRunner::run(const std::vector<int32_t>& window, int begin, int end, int first_logit) {
  const int n = end - begin;
  positions_.resize(size_t(n));
  std::iota(positions_.begin(), positions_.end(), begin);
  seq_index_.assign(size_t(n), 0);
  ForwardBatch batch;
  batch.tokens = window.data() + begin;
  batch.meta.n_tokens = n;
  batch.meta.positions = positions_.data();
  batch.meta.seq_index = seq_index_.data();
  batch.meta.slot_mapping = positions_.data();
  batch.meta.block_tables = {block_table_};
  const int first_row = std::clamp(first_logit - begin, 0, n);
  batch.logits_rows.resize(size_t(n - first_row));
  std::iota(batch.logits_rows.begin(), batch.logits_rows.end(), first_row);
  logits_.resize(batch.logits_rows.size() * vocab_);
  forward_.forward(cache_, batch, logits_.data());
  return logits_.data();
}

}  // namespace tidal
