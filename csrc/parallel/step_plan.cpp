#include "parallel/step_plan.h"

#include <algorithm>
#include <cstring>

#include "core/error.h"

namespace tidal {

namespace {

class Writer {
 public:
  explicit Writer(std::vector<uint8_t>& out) : out_(out) {}
  template <typename T>
  void value(T v) { append(&v, sizeof v); }
  void ints(const std::vector<int32_t>& v) {
    value(uint32_t(v.size()));
    append(v.data(), v.size() * sizeof(int32_t));
  }

 private:
  // resize + memcpy: GCC 12 warns (a false -Wstringop-overflow) on inserting
  // a few bytes into an empty vector.
  void append(const void* p, size_t n) {
    if (n == 0) return;
    const size_t at = out_.size();
    out_.resize(at + n);
    std::memcpy(out_.data() + at, p, n);
  }
  std::vector<uint8_t>& out_;
};

class Reader {
 public:
  explicit Reader(const std::vector<uint8_t>& in) : in_(in) {}
  template <typename T>
  T value() {
    T v;
    take(&v, sizeof v);
    return v;
  }
  std::vector<int32_t> ints() {
    std::vector<int32_t> v(count(sizeof(int32_t)));
    take(v.data(), v.size() * sizeof(int32_t));
    return v;
  }
  // An element count, checked against the bytes left so that garbage cannot
  // make us allocate without bound.
  size_t count(size_t element_bytes) {
    const size_t n = value<uint32_t>();
    if (n * element_bytes > in_.size() - pos_) throw Error(ErrorCode::kCorrupt, "step plan: bad count");
    return n;
  }
  bool done() const { return pos_ == in_.size(); }

 private:
  void take(void* out, size_t n) {
    if (n > in_.size() - pos_) throw Error(ErrorCode::kCorrupt, "step plan: truncated");
    std::memcpy(out, in_.data() + pos_, n);
    pos_ += n;
  }
  const std::vector<uint8_t>& in_;
  size_t pos_ = 0;
};

}  // namespace

std::vector<uint8_t> encode_plan(const StepPlan& plan) {
  std::vector<uint8_t> out;
  Writer w(out);
  w.value(uint8_t(plan.kind));
  w.value(int32_t(plan.num_blocks));
  w.value(int32_t(plan.block_size));
  w.value(uint8_t(plan.kv_dtype));
  w.value(uint32_t(plan.copies.size()));
  for (const BlockCopy& c : plan.copies) {
    w.value(c.src);
    w.value(c.dst);
  }
  w.value(uint32_t(plan.micro_batches.size()));
  for (const FlatBatch& b : plan.micro_batches) {
    w.ints(b.tokens);
    w.ints(b.positions);
    w.ints(b.seq_index);
    w.ints(b.slots);
    w.ints(b.logits_rows);
    w.value(uint32_t(b.block_tables.size()));
    for (const std::vector<int32_t>& t : b.block_tables) w.ints(t);
  }
  return out;
}

StepPlan decode_plan(const std::vector<uint8_t>& bytes) {
  Reader r(bytes);
  StepPlan plan;
  const auto kind = r.value<uint8_t>();
  if (kind > uint8_t(StepPlan::Kind::kStop)) throw Error(ErrorCode::kCorrupt, "step plan: bad kind");
  plan.kind = StepPlan::Kind(kind);
  plan.num_blocks = r.value<int32_t>();
  plan.block_size = r.value<int32_t>();
  plan.kv_dtype = DType(r.value<uint8_t>());
  if (plan.kv_dtype != DType::F32 && plan.kv_dtype != DType::F16) {
    throw Error(ErrorCode::kCorrupt, "step plan: bad KV cache dtype");
  }
  plan.copies.resize(r.count(2 * sizeof(int32_t)));
  for (BlockCopy& c : plan.copies) {
    c.src = r.value<int32_t>();
    c.dst = r.value<int32_t>();
  }
  plan.micro_batches.resize(r.count(6 * sizeof(uint32_t)));
  for (FlatBatch& b : plan.micro_batches) {
    b.tokens = r.ints();
    b.positions = r.ints();
    b.seq_index = r.ints();
    b.slots = r.ints();
    b.logits_rows = r.ints();
    b.block_tables.resize(r.count(sizeof(uint32_t)));
    for (std::vector<int32_t>& t : b.block_tables) t = r.ints();
    const size_t n = b.tokens.size();
    if (b.positions.size() != n || b.seq_index.size() != n || b.slots.size() != n) {
      throw Error(ErrorCode::kCorrupt, "step plan: ragged micro-batch");
    }
  }
  if (!r.done()) throw Error(ErrorCode::kCorrupt, "step plan: trailing bytes");
  return plan;
}

void plan_micro_batches(const SchedulerOutput& step, int block_size, int count, std::vector<FlatBatch>& out) {
  const size_t n = step.scheduled.size();
  const size_t m = std::min(size_t(std::max(count, 1)), n);
  out.resize(m);
  if (m == 0) return;
  int64_t total = 0;
  for (const ScheduledSeq& s : step.scheduled) total += s.num_new_tokens;
  size_t begin = 0, made = 0;
  int64_t tokens = 0;
  for (size_t i = 0; i + 1 < n && made + 1 < m; ++i) {
    tokens += step.scheduled[i].num_new_tokens;
    const size_t left = n - (i + 1);       // sequences after i
    const size_t still = m - (made + 1);   // micro-batches to make after this one
    // Close at the next multiple of total / m, or when every sequence left
    // must start a micro-batch of its own.
    if (tokens * int64_t(m) >= total * int64_t(made + 1) || left == still) {
      out[made++].assign(step, begin, i + 1, block_size);
      begin = i + 1;
    }
  }
  out[made].assign(step, begin, n, block_size);
}

}  // namespace tidal
