#include "parallel/rank_worker.h"

#include <cstring>

#include "core/error.h"

namespace tidal {

void send_plan(Communicator& replica, const StepPlan& plan) {
  std::vector<uint8_t> bytes = encode_plan(plan);
  uint64_t size = bytes.size();
  replica.broadcast(&size, sizeof size, 0, Wait::kBounded);
  replica.broadcast(bytes.data(), bytes.size(), 0, Wait::kBounded);
}

StepPlan receive_plan(Communicator& replica) {
  uint64_t size = 0;
  replica.broadcast(&size, sizeof size, 0, Wait::kForever);
  std::vector<uint8_t> bytes(size);
  replica.broadcast(bytes.data(), bytes.size(), 0, Wait::kBounded);
  return decode_plan(bytes);
}

RankWorker::RankWorker(const Model& full, const ParallelConfig& parallel, std::unique_ptr<Communicator> replica,
                       Backend& backend)
    : layout_(shard_layout(full.config, parallel, replica->rank())),
      replica_(std::move(replica)),
      tp_group_(replica_->split(layout_.stage, layout_.tp_rank)),
      shard_(shard_model(full, layout_)),
      forward_(shard_, backend, tensor_parallel(layout_, tp_group_.get())) {}

void RankWorker::serve() {
  for (;;) {
    const StepPlan plan = receive_plan(*replica_);
    if (plan.kind == StepPlan::Kind::kStop) return;
    execute(plan, nullptr);
  }
}

void RankWorker::execute(const StepPlan& plan, std::vector<float>* logits) {
  switch (plan.kind) {
    case StepPlan::Kind::kAllocate: {
      const ModelConfig& c = shard_.config;
      cache_ = std::make_unique<KvCache>(
          KvCacheShape{c.n_layers, c.n_kv_heads, c.head_dim, plan.block_size, plan.num_blocks, plan.kv_dtype});
      return;
    }
    case StepPlan::Kind::kStep:
      if (!cache_) throw Error(ErrorCode::kInternal, "step before the KV cache was allocated");
      step(plan, logits);
      return;
    case StepPlan::Kind::kStop:
      return;
  }
}

void RankWorker::step(const StepPlan& plan, std::vector<float>* logits) {
  for (const BlockCopy& copy : plan.copies) cache_->copy_block(copy.src, copy.dst);
  const int rank = replica_->rank();
  const int tp = layout_.tp_size;
  const int dim = shard_.config.dim;
  const size_t vocab = size_t(shard_.config.vocab_size);
  const int last_stage_head = (layout_.num_stages - 1) * tp;  // sends the logits to rank 0

  size_t row = 0;  // sampling rows of the micro-batches before this one
  for (const FlatBatch& mb : plan.micro_batches) {
    const int n = mb.n_tokens();
    const size_t activation_bytes = size_t(n) * dim * sizeof(float);
    const ForwardBatch batch = mb.view();
    if (layout_.first_stage()) {
      forward_.embed(mb.tokens.data(), n);
    } else {
      replica_->recv(forward_.hidden(n), activation_bytes, rank - tp);
    }
    forward_.run_layers(*cache_, batch.meta);
    const size_t m = mb.logits_rows.size();
    if (!layout_.last_stage()) {
      replica_->send(forward_.hidden(n), activation_bytes, rank + tp);
    } else if (m > 0) {
      float* out;
      if (rank == 0) {
        out = logits->data() + row * vocab;
      } else {
        rows_.resize(m * vocab);
        out = rows_.data();
      }
      forward_.head(mb.logits_rows, out);
      if (rank == last_stage_head && rank != 0) replica_->send(out, m * vocab * sizeof(float), 0);
    }
    row += m;
  }

  // The driver collects what the last stage sent while it went on with its
  // own micro-batches.
  if (rank == 0 && !layout_.last_stage()) {
    row = 0;
    for (const FlatBatch& mb : plan.micro_batches) {
      const size_t m = mb.logits_rows.size();
      if (m > 0) replica_->recv(logits->data() + row * vocab, m * vocab * sizeof(float), last_stage_head);
      row += m;
    }
  }
}

}  // namespace tidal
