#include "engine/model_runner.h"

#include "core/error.h"

namespace tidal {

void FlatBatch::assign(const SchedulerOutput& step, size_t begin, size_t end, int block_size) {
  tokens.clear();
  positions.clear();
  seq_index.clear();
  slots.clear();
  logits_rows.clear();
  block_tables.resize(end - begin);
  for (size_t i = begin; i < end; ++i) {
    const ScheduledSeq& s = step.scheduled[i];
    const Sequence& seq = *s.seq;
    for (int j = 0; j < s.num_new_tokens; ++j) {
      const int pos = seq.num_computed + j;
      tokens.push_back(seq.tokens[pos]);
      positions.push_back(pos);
      seq_index.push_back(int32_t(i - begin));
      slots.push_back(seq.blocks.blocks[pos / block_size] * block_size + pos % block_size);
    }
    block_tables[i - begin] = seq.blocks.blocks;
    if (s.sample) logits_rows.push_back(int32_t(tokens.size()) - 1);
  }
}

ForwardBatch FlatBatch::view() const {
  ForwardBatch batch;
  batch.tokens = tokens.data();
  batch.meta.n_tokens = n_tokens();
  batch.meta.positions = positions.data();
  batch.meta.seq_index = seq_index.data();
  batch.meta.slot_mapping = slots.data();
  for (const std::vector<int32_t>& table : block_tables) batch.meta.block_tables.emplace_back(table);
  batch.logits_rows = logits_rows;
  return batch;
}

ModelRunner::ModelRunner(const Model& model, Backend& backend) : config_(model.config), forward_(model, backend) {}

size_t ModelRunner::kv_bytes_per_token(DType dtype) const {
  return KvCacheShape{.n_layers = config_.n_layers, .n_kv_heads = config_.n_kv_heads, .head_dim = config_.head_dim,
                      .dtype = dtype}
      .bytes_per_token();
}

void ModelRunner::allocate_kv_cache(int num_blocks, int block_size, DType dtype) {
  cache_ = std::make_unique<KvCache>(
      KvCacheShape{config_.n_layers, config_.n_kv_heads, config_.head_dim, block_size, num_blocks, dtype});
}

std::vector<float>& ModelRunner::run(const SchedulerOutput& step) {
  if (!cache_) throw Error(ErrorCode::kInternal, "ModelRunner::run before allocate_kv_cache");
  for (const BlockCopy& copy : step.block_copies) cache_->copy_block(copy.src, copy.dst);
  batch_.assign(step, 0, step.scheduled.size(), cache_->shape().block_size);
  logits_.resize(batch_.logits_rows.size() * size_t(config_.vocab_size));
  if (batch_.n_tokens() > 0) forward_.forward(*cache_, batch_.view(), logits_.data());
  return logits_;
}

}  // namespace tidal
