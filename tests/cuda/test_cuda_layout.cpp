// The host-side parts of the CUDA backend, which run (and are checked) on
// machines without a GPU: the device weight layout and the attention plan.
#include <gtest/gtest.h>

#include <cmath>
#include <string>

#include "core/error.h"
#include "cuda/attention_plan.h"
#include "cuda/device_layout.h"
#include "cuda/weight_upload.h"
#include "cuda_test_util.h"

namespace tidal::cuda::test {
namespace {

// ---------------------------------------------------------------- device layout

TEST(DeviceLayout, EveryElementDecodesToTheDequantizedValue) {
  std::mt19937 rng(21);
  for (DType type : kAllTypes) {
    const int64_t cols = dtype_block_elems(type) == 1 ? 37 : 96, rows = 5;
    const HostWeight w = random_weight(type, rows, cols, rng);
    std::vector<uint8_t> packed(w.view.bytes());
    repack_for_device(w.view, packed.data());
    const Weight device_layout{type, rows, cols, packed.data()};
    std::vector<float> want(static_cast<size_t>(cols));
    for (int64_t r = 0; r < rows; ++r) {
      dequantize_row(type, w.view.row(r), want.data(), cols);
      for (int64_t k = 0; k < cols; ++k) {
        // Q4_1's d * q + m may be rounded once (FMA) or twice; the rest are exact.
        const double tol = type == DType::Q4_1 ? 4 * 0x1p-24 * (std::fabs(want[size_t(k)]) + 2.0) : 0.0;
        ASSERT_LE(std::fabs(device_layout_element(device_layout, r, k) - want[size_t(k)]), tol)
            << dtype_name(type) << " r=" << r << " k=" << k;
      }
    }
  }
}

TEST(DeviceLayout, QuantizedCodesStartOn16ByteBoundariesAndScalesFollow) {
  for (DType type : {DType::Q8_0, DType::Q4_0, DType::Q4_1}) {
    const int64_t rows = 3, cols = 64;
    const QuantPlanes p = quant_planes(type, nullptr, rows, cols);
    EXPECT_EQ(p.nb, 2);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(p.d), uintptr_t(rows * p.nb * code_bytes(type)));
    EXPECT_EQ(reinterpret_cast<uintptr_t>(p.d) % 16, 0u);
    // codes + scales (+ mins) fill exactly the GGUF matrix's bytes
    const size_t planes = size_t(rows * p.nb) * (code_bytes(type) + (type == DType::Q4_1 ? 4 : 2));
    EXPECT_EQ(planes, Weight({type, rows, cols, nullptr}).bytes()) << dtype_name(type);
  }
}

// ---------------------------------------------------------------- attention plan

struct Meta {
  std::vector<int32_t> positions, seq_index, slots;
  std::vector<std::vector<int32_t>> tables;
  AttentionMeta view() const {
    AttentionMeta m;
    m.n_tokens = int(positions.size());
    m.positions = positions.data();
    m.seq_index = seq_index.data();
    m.slot_mapping = slots.data();
    for (const auto& t : tables) m.block_tables.emplace_back(t);
    return m;
  }
  void add(int seq, int pos) {
    positions.push_back(pos);
    seq_index.push_back(seq);
    slots.push_back(0);
  }
};

const KvCacheShape kShape{.n_layers = 1, .n_kv_heads = 2, .head_dim = 64, .block_size = 16, .num_blocks = 1000};

std::vector<AttentionItem> items_of(const AttentionPlan& plan) {
  std::vector<AttentionItem> items(size_t(plan.n_items));
  std::memcpy(items.data(), plan.packed.data() + plan.items_at, items.size() * sizeof(AttentionItem));
  return items;
}

TEST(AttentionPlan, RunsFollowSequencesAndConsecutivePositionsUpToTheItemSize) {
  Meta m;
  m.tables = {std::vector<int32_t>(20, 1), std::vector<int32_t>(20, 2)};
  for (int p = 0; p < 5; ++p) m.add(0, p);  // a run of 5, cut at 4 (group 2 -> 4 queries per item)
  m.add(1, 7);                              // another sequence
  m.add(1, 9);                              // a gap in positions
  m.add(0, 300);                            // back to sequence 0
  const AttentionPlan plan = plan_attention(m.view(), kShape, 4, AttentionSplit::kNever, 100, size_t(1) << 30);
  EXPECT_EQ(plan.group, 2);
  EXPECT_EQ(plan.queries_per_item, 4);
  EXPECT_FALSE(plan.split);
  const auto items = items_of(plan);
  ASSERT_EQ(items.size(), 5u);
  const int want[5][5] = {{0, 4, 0, 0, 1}, {4, 1, 0, 0, 1}, {5, 1, 1, 0, 1}, {6, 1, 1, 0, 1}, {7, 1, 0, 0, 3}};
  for (size_t i = 0; i < items.size(); ++i) {
    const AttentionItem& it = items[i];
    EXPECT_EQ((std::vector<int>{it.first_token, it.n_queries, it.seq, it.part_begin, it.part_end}),
              std::vector<int>(want[i], want[i] + 5))
        << "item " << i;
  }
  // Tables are flattened at the longest table's stride, positions follow.
  EXPECT_EQ(plan.table_stride, 20);
  EXPECT_EQ(plan.packed[20], 2);
  EXPECT_EQ(plan.packed[plan.positions_at + 7], 300);
}

TEST(AttentionPlan, SplitGivesEveryPartitionItsOwnItemAndEveryTokenItsPartialRows) {
  Meta m;
  m.tables = {std::vector<int32_t>(40, 0), std::vector<int32_t>(40, 0)};
  m.add(0, 500);  // 4 partitions of 128
  m.add(1, 127);  // 1
  m.add(1, 128);  // 2 (a run with the previous token)
  const AttentionPlan plan = plan_attention(m.view(), kShape, 2, AttentionSplit::kAlways, 100, 0);
  ASSERT_TRUE(plan.split);
  EXPECT_EQ(plan.partial_rows, 4 + 1 + 2);
  const auto items = items_of(plan);
  ASSERT_EQ(items.size(), 4u + 2u);
  for (int p = 0; p < 4; ++p) {
    EXPECT_EQ(items[size_t(p)].part_begin, p);
    EXPECT_EQ(items[size_t(p)].part_end, p + 1);
    EXPECT_EQ(items[size_t(p)].first_token, 0);
  }
  EXPECT_EQ(items[4].n_queries, 2);
  EXPECT_EQ(items[5].part_begin, 1);
  const int32_t* offsets = plan.packed.data() + plan.partial_offsets_at;
  EXPECT_EQ(offsets[0], 0);
  EXPECT_EQ(offsets[1], 4);
  EXPECT_EQ(offsets[2], 5);
}

TEST(AttentionPlan, AutoSplitsLongDecodesButNotLargePrefills) {
  Meta decode;
  decode.tables = {std::vector<int32_t>(300, 0)};
  decode.add(0, 4095);
  EXPECT_TRUE(plan_attention(decode.view(), kShape, 8, AttentionSplit::kAuto, 132, size_t(1) << 28).split);
  // ... unless the partial rows would not fit in the budget
  EXPECT_FALSE(plan_attention(decode.view(), kShape, 8, AttentionSplit::kAuto, 132, 1000).split);

  Meta prefill;
  prefill.tables = {std::vector<int32_t>(300, 0)};
  for (int p = 0; p < 4096; ++p) prefill.add(0, p);
  EXPECT_FALSE(plan_attention(prefill.view(), kShape, 8, AttentionSplit::kAuto, 132, size_t(1) << 28).split);
}

TEST(AttentionPlan, RejectsInconsistentMetadata) {
  Meta m;
  m.tables = {std::vector<int32_t>{3}};
  m.add(0, 16);  // past a one-block table
  EXPECT_THROW(plan_attention(m.view(), kShape, 2, AttentionSplit::kAuto, 1, 0), Error);
  m.positions[0] = 15;
  EXPECT_NO_THROW(plan_attention(m.view(), kShape, 2, AttentionSplit::kAuto, 1, 0));
  EXPECT_THROW(plan_attention(m.view(), kShape, 3, AttentionSplit::kAuto, 1, 0), Error);  // 3 heads over 2
  m.tables[0][0] = 1000;                                                                   // outside the pool
  EXPECT_THROW(plan_attention(m.view(), kShape, 2, AttentionSplit::kAuto, 1, 0), Error);
  m.tables[0][0] = 3;
  KvCacheShape odd = kShape;
  odd.head_dim = 30;
  EXPECT_THROW(plan_attention(m.view(), odd, 2, AttentionSplit::kAuto, 1, 0), Error);
}

}  // namespace
}  // namespace tidal::cuda::test
