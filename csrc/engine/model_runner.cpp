#include "engine/model_runner.h"

namespace tidal {

ModelRunner::ModelRunner(const Model& model, Backend& backend, KvCache& cache)
    : forward_(model, backend), cache_(cache), vocab_(model.config.vocab_size) {}

std::vector<float>& ModelRunner::run(const SchedulerOutput& step) {
  for (const BlockCopy& copy : step.block_copies) cache_.copy_block(copy.src, copy.dst);

  const int block_size = cache_.shape().block_size;
  tokens_.clear();
  positions_.clear();
  seq_index_.clear();
  slots_.clear();
  ForwardBatch batch;
  for (size_t i = 0; i < step.scheduled.size(); ++i) {
    const ScheduledSeq& s = step.scheduled[i];
    const Sequence& seq = *s.seq;
    for (int j = 0; j < s.num_new_tokens; ++j) {
      const int pos = seq.num_computed + j;
      tokens_.push_back(seq.tokens[pos]);
      positions_.push_back(pos);
      seq_index_.push_back(int32_t(i));
      slots_.push_back(seq.blocks.blocks[pos / block_size] * block_size + pos % block_size);
    }
    batch.meta.block_tables.emplace_back(seq.blocks.blocks);
    if (s.sample) batch.logits_rows.push_back(int32_t(tokens_.size()) - 1);
  }
  batch.tokens = tokens_.data();
  batch.meta.n_tokens = int(tokens_.size());
  batch.meta.positions = positions_.data();
  batch.meta.seq_index = seq_index_.data();
  batch.meta.slot_mapping = slots_.data();

  logits_.resize(batch.logits_rows.size() * size_t(vocab_));
  if (batch.meta.n_tokens > 0) forward_.forward(cache_, batch, logits_.data());
  return logits_;
}

}  // namespace tidal
