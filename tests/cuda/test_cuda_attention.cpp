// kv_write and paged attention on the device against the float64 reference,
// and their batch invariance (the same bits for a token whether it runs in a
// prefill batch, a chunk or a decode step, split across blocks or not).
// Skipped without a CUDA device.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>

#include "core/error.h"
#include "cuda/cuda_backend.h"
#include "cuda_test_util.h"
#include "reference/reference_ops.h"

namespace tidal::cuda::test {
namespace {

// Sequences with their own K/V/Q per position, placed in shuffled blocks.
struct Fixture {
  KvCacheShape shape;
  int n_heads;
  int layer = 1;
  std::vector<int> lengths;
  std::vector<std::vector<int32_t>> tables;
  std::vector<std::vector<float>> k, v, q;  // per sequence: [pos][row]

  Fixture(KvCacheShape s, int heads, std::vector<int> lens, std::mt19937& rng)
      : shape(s), n_heads(heads), lengths(std::move(lens)) {
    std::vector<int32_t> blocks(static_cast<size_t>(shape.num_blocks));
    std::iota(blocks.begin(), blocks.end(), 0);
    std::shuffle(blocks.begin(), blocks.end(), rng);
    size_t next = 0;
    for (int len : lengths) {
      const int n_blocks = (len + shape.block_size - 1) / shape.block_size;
      tables.emplace_back(blocks.begin() + long(next), blocks.begin() + long(next) + n_blocks);
      next += size_t(n_blocks);
      k.push_back(random_floats(rng, size_t(len) * kv_row()));
      v.push_back(random_floats(rng, size_t(len) * kv_row()));
      q.push_back(random_floats(rng, size_t(len) * q_row()));
    }
  }
  size_t kv_row() const { return size_t(shape.n_kv_heads) * shape.head_dim; }
  size_t q_row() const { return size_t(n_heads) * shape.head_dim; }

  // The batch's metadata and its K, V, Q rows.
  struct Batch {
    std::vector<int32_t> positions, seq_index, slots;
    std::vector<float> k, v, q;
    AttentionMeta meta;
  };
  Batch batch(const std::vector<std::pair<int, int>>& tokens) const {
    Batch b;
    for (auto [seq, pos] : tokens) {
      b.positions.push_back(pos);
      b.seq_index.push_back(seq);
      b.slots.push_back(tables[size_t(seq)][size_t(pos / shape.block_size)] * shape.block_size + pos % shape.block_size);
      const auto& ks = k[size_t(seq)];
      const auto& vs = v[size_t(seq)];
      const auto& qs = q[size_t(seq)];
      b.k.insert(b.k.end(), ks.begin() + long(pos * kv_row()), ks.begin() + long((pos + 1) * kv_row()));
      b.v.insert(b.v.end(), vs.begin() + long(pos * kv_row()), vs.begin() + long((pos + 1) * kv_row()));
      b.q.insert(b.q.end(), qs.begin() + long(pos * q_row()), qs.begin() + long((pos + 1) * q_row()));
    }
    b.meta.n_tokens = int(tokens.size());
    b.meta.positions = b.positions.data();
    b.meta.seq_index = b.seq_index.data();
    b.meta.slot_mapping = b.slots.data();
    for (const auto& t : tables) b.meta.block_tables.emplace_back(t);
    return b;
  }

  // kv_write then (unless write_only) attention on the device.
  std::vector<float> step(CudaBackend& gpu, CudaKvCache& cache, const std::vector<std::pair<int, int>>& tokens,
                          bool write_only = false) const {
    const Batch b = batch(tokens);
    const DeviceBuffer dk = to_device(b.k), dv = to_device(b.v), dq = to_device(b.q);
    DeviceBuffer dout(tokens.size() * q_row() * sizeof(float));
    gpu.kv_write(cache, layer, dk.as<float>(), dv.as<float>(), b.meta);
    if (write_only) return {};
    gpu.attention(cache, layer, dq.as<float>(), b.meta, n_heads, dout.as<float>());
    return to_host<float>(dout.data(), tokens.size() * q_row());
  }

  // The same on the host reference.
  std::vector<float> step(KvCache& cache, const std::vector<std::pair<int, int>>& tokens, bool write_only = false) const {
    const Batch b = batch(tokens);
    ref::kv_write(cache, layer, b.k.data(), b.v.data(), b.meta);
    if (write_only) return {};
    std::vector<float> out(tokens.size() * q_row());
    ref::attention(cache, layer, b.q.data(), b.meta, n_heads, out.data());
    return out;
  }

  std::vector<std::pair<int, int>> span_of_all(int begin, int end) const {
    std::vector<std::pair<int, int>> tokens;
    for (int s = 0; s < int(lengths.size()); ++s) {
      for (int p = begin; p < std::min(end, lengths[size_t(s)]); ++p) tokens.emplace_back(s, p);
    }
    return tokens;
  }
};

void expect_close(const std::vector<float>& got, const std::vector<float>& want, double tol) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) ASSERT_NEAR(got[i], want[i], tol * (1.0 + std::fabs(want[i]))) << i;
}

class CudaAttention : public CudaTest {};

TEST_F(CudaAttention, KvWritePlacesRowsLikeTheReference) {
  std::mt19937 rng(12);
  const Fixture f({.n_layers = 2, .n_kv_heads = 2, .head_dim = 24, .block_size = 4, .num_blocks = 16}, 4, {9, 3, 14},
                  rng);
  CudaBackend gpu;
  CudaKvCache device(f.shape);
  KvCache host(f.shape);
  f.step(gpu, device, f.span_of_all(0, 14), true);
  f.step(host, f.span_of_all(0, 14), true);
  const size_t n = size_t(f.shape.num_blocks) * f.shape.floats_per_block();
  EXPECT_TRUE(same_bits(device.download_keys(1).data(), host.key(1, 0, 0), n));
  EXPECT_TRUE(same_bits(device.download_values(1).data(), host.value(1, 0, 0), n));
  const std::vector<float> other = device.download_keys(0);
  EXPECT_TRUE(std::all_of(other.begin(), other.end(), [](float x) { return x == 0.0f; }));  // layer 0 untouched
}

// Prefill of three ragged sequences in one batch, then a decode step for
// each, with GQA (6 heads over 2) and without, head_dim 64 and 40, block
// sizes 16 and 8.
TEST_F(CudaAttention, PrefillAndDecodeMatchReference) {
  const KvCacheShape shapes[] = {{.n_layers = 2, .n_kv_heads = 2, .head_dim = 64, .block_size = 16, .num_blocks = 32},
                                 {.n_layers = 2, .n_kv_heads = 3, .head_dim = 40, .block_size = 8, .num_blocks = 48}};
  const int heads[] = {6, 3};
  for (int c = 0; c < 2; ++c) {
    std::mt19937 rng(13);
    const Fixture f(shapes[c], heads[c], {38, 5, 71}, rng);
    CudaBackend gpu;
    CudaKvCache device(f.shape);
    KvCache host(f.shape);
    std::vector<std::pair<int, int>> prefill, decode;
    for (auto tok : f.span_of_all(0, 71)) (tok.second + 1 < f.lengths[size_t(tok.first)] ? prefill : decode).push_back(tok);
    expect_close(f.step(gpu, device, prefill), f.step(host, prefill), 2e-5);
    expect_close(f.step(gpu, device, decode), f.step(host, decode), 2e-5);
  }
}

TEST_F(CudaAttention, LongContextDecodeMatchesReference) {
  std::mt19937 rng(15);
  const Fixture f({.n_layers = 2, .n_kv_heads = 1, .head_dim = 128, .block_size = 16, .num_blocks = 520}, 4, {8192},
                  rng);
  CudaBackend gpu;
  CudaKvCache device(f.shape);
  KvCache host(f.shape);
  f.step(gpu, device, f.span_of_all(0, 8191), true);
  f.step(host, f.span_of_all(0, 8191), true);
  expect_close(f.step(gpu, device, {{0, 8191}}), f.step(host, {{0, 8191}}), 2e-5);
}

// Every token's output is the same bits: in one prefill batch (unsplit),
// in chunks of 1 and 7 of its own sequence, and with the flash-decoding split
// forced on or off; positions cross several 128-position partitions.
TEST_F(CudaAttention, BatchInvariantAcrossChunksAndSplitModes) {
  std::mt19937 rng(14);
  const Fixture f({.n_layers = 2, .n_kv_heads = 2, .head_dim = 64, .block_size = 16, .num_blocks = 64}, 6,
                  {300, 9, 257}, rng);
  const size_t q_row = f.q_row();
  const auto all = f.span_of_all(0, 300);
  CudaBackend never({.attention_split = AttentionSplit::kNever});
  CudaKvCache whole(f.shape);
  const std::vector<float> batched = f.step(never, whole, all);
  for (AttentionSplit mode : {AttentionSplit::kNever, AttentionSplit::kAlways}) {
    CudaBackend gpu({.attention_split = mode});
    for (int chunk : {1, 7}) {
      CudaKvCache cache(f.shape);
      for (int s = 0; s < 3; ++s) {
        for (int p = 0; p < f.lengths[size_t(s)]; p += chunk) {
          std::vector<std::pair<int, int>> tokens;
          for (int i = p; i < std::min(p + chunk, f.lengths[size_t(s)]); ++i) tokens.emplace_back(s, i);
          const std::vector<float> out = f.step(gpu, cache, tokens);
          for (size_t i = 0; i < tokens.size(); ++i) {
            const size_t at = size_t(std::find(all.begin(), all.end(), tokens[i]) - all.begin());
            ASSERT_TRUE(same_bits(out.data() + i * q_row, batched.data() + at * q_row, q_row))
                << "seq " << s << " pos " << tokens[i].second << " chunk " << chunk << " split "
                << (mode == AttentionSplit::kAlways);
          }
        }
      }
    }
  }
}

TEST_F(CudaAttention, RejectsPositionsPastTheBlockTableAndHostCaches) {
  std::mt19937 rng(16);
  const Fixture f({.n_layers = 2, .n_kv_heads = 1, .head_dim = 16, .block_size = 4, .num_blocks = 4}, 1, {4}, rng);
  CudaBackend gpu;
  CudaKvCache cache(f.shape);
  Fixture::Batch b = f.batch({{0, 3}});
  b.positions[0] = 4;
  DeviceBuffer q(16 * sizeof(float)), out(16 * sizeof(float));
  EXPECT_THROW(gpu.attention(cache, 1, q.as<float>(), b.meta, 1, out.as<float>()), Error);
  KvCache host(f.shape);
  EXPECT_THROW(gpu.attention(host, 1, q.as<float>(), b.meta, 1, out.as<float>()), Error);
  EXPECT_THROW(gpu.kv_write(host, 1, q.as<float>(), q.as<float>(), b.meta), Error);
}

TEST_F(CudaAttention, CopyBlockCopiesEveryLayer) {
  const KvCacheShape shape{.n_layers = 2, .n_kv_heads = 2, .head_dim = 8, .block_size = 4, .num_blocks = 5};
  CudaKvCache cache(shape);
  const size_t block = shape.floats_per_block();
  std::vector<float> pattern(block);
  std::iota(pattern.begin(), pattern.end(), 1.0f);
  for (int l = 0; l < 2; ++l) {
    check(cudaMemcpy(cache.keys(l) + block, pattern.data(), block * sizeof(float), cudaMemcpyHostToDevice), "set");
    check(cudaMemcpy(cache.values(l) + block, pattern.data(), block * sizeof(float), cudaMemcpyHostToDevice), "set");
  }
  cache.copy_block(1, 3, nullptr);
  for (int l = 0; l < 2; ++l) {
    EXPECT_TRUE(same_bits(cache.download_keys(l).data() + 3 * block, pattern.data(), block));
    EXPECT_TRUE(same_bits(cache.download_values(l).data() + 3 * block, pattern.data(), block));
    EXPECT_EQ(cache.download_keys(l)[2 * block], 0.0f);
  }
}

TEST_F(CudaAttention, PoolSizedFromFreeMemoryFitsIt) {
  const KvCacheShape shape{.n_layers = 32, .n_kv_heads = 8, .head_dim = 128, .block_size = 16, .num_blocks = 0};
  const DeviceInfo info = current_device_info();
  const int blocks = CudaKvCache::blocks_for_free_memory(shape, 0.5, size_t(1) << 30);
  EXPECT_GT(blocks, 0);
  EXPECT_LE(double(blocks) * shape.bytes_per_token() * shape.block_size, 0.5 * double(info.free_bytes));
}

}  // namespace
}  // namespace tidal::cuda::test
