// The F16 KV cache (--kv-cache-dtype f16): K and V are rounded to half
// precision as they are written; attention over them is exactly F32
// attention over the rounded values, and within a derived bound of F32
// attention over the unrounded ones; greedy generation agrees with the F32
// cache on the golden prompts.
#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <numeric>
#include <random>
#include <vector>

#include "core/dequantize.h"
#include "core/error.h"
#include "core/thread_pool.h"
#include "cpu/cpu_backend.h"
#include "cpu/fp16_rows.h"
#include "kv/kv_cache.h"
#include "parallel/step_plan.h"
#include "support/test_models.h"

namespace tidal::test {
namespace {

// ---------------------------------------------------------------- conversion

// Finite floats that stress the rounding: every half value, the exact
// midpoint between each pair of neighbouring halves (ties to even), values
// just either side of the midpoints, the overflow threshold, and a sweep
// over every float exponent.
std::vector<float> conversion_cases() {
  std::vector<float> v;
  for (uint32_t h = 0; h < 0x7bffu; ++h) {  // up to the largest finite half
    for (uint16_t sign : {uint16_t(0), uint16_t(0x8000u)}) {
      const float lo = fp16_to_fp32(uint16_t(h | sign)), hi = fp16_to_fp32(uint16_t((h + 1) | sign));
      const float mid = (lo + hi) / 2;  // 12 significant bits: exact in F32
      v.insert(v.end(), {lo, mid, std::nextafter(mid, lo), std::nextafter(mid, hi)});
    }
  }
  v.insert(v.end(), {65504.0f, 65519.99f, 65520.0f, -65520.0f, 1e30f, -1e30f, 1e-30f, -1e-30f});
  for (uint32_t bits = 0; bits < 0x7f800000u; bits += 4099) {
    v.push_back(std::bit_cast<float>(bits));
    v.push_back(-std::bit_cast<float>(bits));
  }
  return v;
}

TEST(KvCacheF16, RowConversionMatchesTheScalarReferenceForFiniteValues) {
  const std::vector<float> src = conversion_cases();
  std::vector<uint16_t> got(src.size());
  // Runs of every length up to 40 first, so vector tails of each size are
  // covered, then the rest in one long row.
  size_t at = 0;
  for (int64_t n = 1; n <= 40; at += size_t(n), ++n) cpu::fp32_to_fp16_row(src.data() + at, got.data() + at, n);
  cpu::fp32_to_fp16_row(src.data() + at, got.data() + at, int64_t(src.size() - at));
  for (size_t i = 0; i < src.size(); ++i) {
    ASSERT_EQ(got[i], fp32_to_fp16(src[i])) << "value " << src[i] << " at " << i;
  }
}

TEST(KvCacheF16, ConversionWritesNothingPastTheRow) {
  const std::vector<float> src(40, 1.5f);
  for (int64_t n = 0; n < 40; ++n) {
    std::vector<uint16_t> dst(41, 0xabcdu);
    cpu::fp32_to_fp16_row(src.data(), dst.data(), n);
    for (size_t i = size_t(n); i < dst.size(); ++i) ASSERT_EQ(dst[i], 0xabcdu) << "n " << n << " index " << i;
  }
}

// ---------------------------------------------------------------- the cache

TEST(KvCacheF16, HalvesBytesPerTokenAndCopiesBlocks) {
  KvCacheShape shape{.n_layers = 2, .n_kv_heads = 2, .head_dim = 8, .block_size = 4, .num_blocks = 5};
  const size_t f32_bytes = shape.bytes_per_token();
  shape.dtype = DType::F16;
  EXPECT_EQ(shape.bytes_per_token() * 2, f32_bytes);
  EXPECT_EQ(shape.bytes_per_token(), size_t(2) * 2 * 2 * 8 * 2);

  KvCache cache(shape);
  for (int l = 0; l < 2; ++l) {
    for (int h = 0; h < 2; ++h) {
      for (int i = 0; i < 4 * 8; ++i) {
        EXPECT_EQ(cache.key_f16(l, 3, h)[i], 0u);  // +0 until written
        cache.key_f16(l, 1, h)[i] = uint16_t(l * 1000 + h * 100 + i);
        cache.value_f16(l, 1, h)[i] = uint16_t(0x8000u | (l * 1000 + h * 100 + i));
      }
    }
  }
  cache.copy_block(1, 3);
  for (int l = 0; l < 2; ++l) {
    for (int h = 0; h < 2; ++h) {
      EXPECT_EQ(std::memcmp(cache.key_f16(l, 3, h), cache.key_f16(l, 1, h), 4 * 8 * 2), 0);
      EXPECT_EQ(std::memcmp(cache.value_f16(l, 3, h), cache.value_f16(l, 1, h), 4 * 8 * 2), 0);
    }
  }
}

TEST(KvCacheF16, OnlyF32AndF16AreAccepted) {
  for (DType t : {DType::BF16, DType::Q8_0, DType::I8}) {
    EXPECT_THROW(KvCache(KvCacheShape{.n_layers = 1, .n_kv_heads = 1, .head_dim = 8, .num_blocks = 1, .dtype = t}),
                 Error);
  }
}

// The ranks of a tensor/pipeline-parallel replica allocate their caches from
// the allocation plan, so the dtype travels in it.
TEST(KvCacheF16, AllocationPlanCarriesTheDtypeToEveryRank) {
  StepPlan plan;
  plan.kind = StepPlan::Kind::kAllocate;
  plan.num_blocks = 7;
  plan.block_size = 16;
  plan.kv_dtype = DType::F16;
  std::vector<uint8_t> bytes = encode_plan(plan);
  EXPECT_EQ(decode_plan(bytes).kv_dtype, DType::F16);
  plan.kv_dtype = DType::F32;
  EXPECT_EQ(decode_plan(encode_plan(plan)).kv_dtype, DType::F32);
  bytes[1 + 2 * sizeof(int32_t)] = uint8_t(DType::Q8_0);  // after the kind, num_blocks and block_size
  EXPECT_THROW(decode_plan(bytes), Error);
}

// ---------------------------------------------------------------- attention

float round_to_f16(float x) { return fp16_to_fp32(fp32_to_fp16(x)); }

std::vector<float> random_floats(std::mt19937& rng, size_t n, float range) {
  std::uniform_real_distribution<float> dist(-range, range);
  std::vector<float> v(n);
  for (float& f : v) f = dist(rng);
  return v;
}

// Sequences of random K/V/Q rows in shuffled blocks. Each run writes every
// position but the last of each sequence as one prefill batch and attends
// over it, then does the same for the last positions as a decode batch;
// the outputs of both, in that order, are returned.
struct Sequences {
  KvCacheShape shape;  // dtype is chosen per run
  int n_heads;
  std::vector<int> lengths;
  std::vector<std::vector<int32_t>> tables;
  std::vector<std::vector<float>> k, v, q;  // per sequence: [pos][row]

  Sequences(KvCacheShape s, int heads, std::vector<int> lens, std::mt19937& rng)
      : shape(s), n_heads(heads), lengths(std::move(lens)) {
    std::vector<int32_t> blocks(size_t(shape.num_blocks));
    std::iota(blocks.begin(), blocks.end(), 0);
    std::shuffle(blocks.begin(), blocks.end(), rng);
    auto next = blocks.begin();
    for (int len : lengths) {
      const int n_blocks = (len + shape.block_size - 1) / shape.block_size;
      tables.emplace_back(next, next + n_blocks);
      next += n_blocks;
      k.push_back(random_floats(rng, size_t(len) * kv_row(), 2.0f));
      v.push_back(random_floats(rng, size_t(len) * kv_row(), 2.0f));
      q.push_back(random_floats(rng, size_t(len) * q_row(), 2.0f));
    }
  }
  size_t kv_row() const { return size_t(shape.n_kv_heads) * shape.head_dim; }
  size_t q_row() const { return size_t(n_heads) * shape.head_dim; }

  // (sequence, position) of the prefill batch, then of the decode batch.
  std::vector<std::vector<std::pair<int, int>>> batches() const {
    std::vector<std::pair<int, int>> prefill, decode;
    for (int s = 0; s < int(lengths.size()); ++s) {
      for (int p = 0; p < lengths[size_t(s)]; ++p) (p + 1 < lengths[size_t(s)] ? prefill : decode).emplace_back(s, p);
    }
    return {prefill, decode};
  }

  // `kv` maps each K and V element before it is written.
  std::vector<float> run(Backend& backend, DType dtype, float (*kv)(float)) const {
    KvCacheShape s = shape;
    s.dtype = dtype;
    KvCache cache(s);
    std::vector<float> out;
    for (const auto& tokens : batches()) {
      std::vector<int32_t> positions, seq_index, slots;
      std::vector<float> kb, vb, qb;
      for (auto [seq, pos] : tokens) {
        positions.push_back(pos);
        seq_index.push_back(seq);
        slots.push_back(tables[size_t(seq)][size_t(pos / s.block_size)] * s.block_size + pos % s.block_size);
        for (size_t i = 0; i < kv_row(); ++i) {
          kb.push_back(kv(k[size_t(seq)][size_t(pos) * kv_row() + i]));
          vb.push_back(kv(v[size_t(seq)][size_t(pos) * kv_row() + i]));
        }
        qb.insert(qb.end(), q[size_t(seq)].begin() + long(size_t(pos) * q_row()),
                  q[size_t(seq)].begin() + long(size_t(pos + 1) * q_row()));
      }
      AttentionMeta meta;
      meta.n_tokens = int(tokens.size());
      meta.positions = positions.data();
      meta.seq_index = seq_index.data();
      meta.slot_mapping = slots.data();
      for (const auto& t : tables) meta.block_tables.emplace_back(t);
      backend.kv_write(cache, 1, kb.data(), vb.data(), meta);
      std::vector<float> o(tokens.size() * q_row());
      backend.attention(cache, 1, qb.data(), meta, n_heads, o.data());
      out.insert(out.end(), o.begin(), o.end());
    }
    return out;
  }
};

float unchanged(float x) { return x; }

// GQA with a head_dim of whole vectors and a sequence long enough for two
// attention chunks; plain MHA with a head_dim and block size that leave
// vector and block tails.
const KvCacheShape kShapes[] = {{.n_layers = 2, .n_kv_heads = 2, .head_dim = 64, .block_size = 16, .num_blocks = 96},
                                {.n_layers = 2, .n_kv_heads = 3, .head_dim = 40, .block_size = 8, .num_blocks = 48}};
const int kHeads[] = {6, 3};
const std::vector<int> kLengths[] = {{38, 5, 71, 1100}, {38, 5, 71}};

TEST(KvCacheF16, KvWriteStoresRoundedToNearestEven) {
  std::mt19937 rng(21);
  const Sequences seqs(kShapes[1], kHeads[1], kLengths[1], rng);
  ThreadPool pool(2);
  CpuBackend cpu(pool);
  KvCacheShape s = seqs.shape;
  s.dtype = DType::F16;
  KvCache cache(s);
  std::vector<int32_t> positions, seq_index, slots;
  std::vector<float> kb, vb;
  for (int p = 0; p < seqs.lengths[0]; ++p) {
    positions.push_back(p);
    seq_index.push_back(0);
    slots.push_back(seqs.tables[0][size_t(p / s.block_size)] * s.block_size + p % s.block_size);
  }
  AttentionMeta meta;
  meta.n_tokens = seqs.lengths[0];
  meta.positions = positions.data();
  meta.seq_index = seq_index.data();
  meta.slot_mapping = slots.data();
  cpu.kv_write(cache, 0, seqs.k[0].data(), seqs.v[0].data(), meta);
  for (int p = 0; p < seqs.lengths[0]; ++p) {
    for (int h = 0; h < s.n_kv_heads; ++h) {
      const int block = seqs.tables[0][size_t(p / s.block_size)], slot = p % s.block_size;
      for (int d = 0; d < s.head_dim; ++d) {
        const size_t src = size_t(p) * seqs.kv_row() + size_t(h) * s.head_dim + size_t(d);
        ASSERT_EQ(cache.key_f16(0, block, h)[slot * s.head_dim + d], fp32_to_fp16(seqs.k[0][src]));
        ASSERT_EQ(cache.value_f16(0, block, h)[slot * s.head_dim + d], fp32_to_fp16(seqs.v[0][src]));
      }
    }
  }
}

// (a) The F16 path widens each half exactly and keeps the F32 path's
// reduction order, so it equals F32 attention over pre-rounded K/V bit for
// bit, in prefill and decode, with one thread or two.
TEST(KvCacheF16, AttentionEqualsF32AttentionOverRoundedKv) {
  for (int c = 0; c < 2; ++c) {
    std::mt19937 rng(22);
    const Sequences seqs(kShapes[c], kHeads[c], kLengths[c], rng);
    for (int threads : {1, 2}) {
      ThreadPool pool(threads);
      CpuBackend cpu(pool);
      const std::vector<float> f16 = seqs.run(cpu, DType::F16, unchanged);
      const std::vector<float> rounded = seqs.run(cpu, DType::F32, round_to_f16);
      ASSERT_EQ(f16.size(), rounded.size());
      EXPECT_EQ(std::memcmp(f16.data(), rounded.data(), f16.size() * sizeof(float)), 0)
          << "shape " << c << ", " << threads << " threads";
    }
  }
}

// (b) Against the F32 cache. Rounding to half changes each K and V element
// x by at most u|x| + 2^-25 (u = 2^-11, half's unit roundoff; 2^-25 covers
// the subnormal halves, whose error is absolute). For a query q that moves
// each score s_j = q.k_j / sqrt(d) by at most
//   delta = (u * sum_i |q_i||k_ji| + 2^-25 * sum_i |q_i|) / sqrt(d),
// which scales every softmax weight by a factor within [e^-2delta, e^2delta],
// so the weights' change moves the output by at most expm1(2 delta) * V,
// and the values' own rounding by at most u V + 2^-25, where V = max |v_j|.
// The bound is computed per query row from the data, plus 2e-5 relative
// for the two runs' own F32 arithmetic (the CPU-vs-float64 tolerance of
// test_cpu_ops.cpp).
TEST(KvCacheF16, AttentionWithinTheRoundingBoundOfTheF32Cache) {
  constexpr double u = 1.0 / 2048, subnormal = 1.0 / (1 << 25);
  for (int c = 0; c < 2; ++c) {
    std::mt19937 rng(23);
    const Sequences seqs(kShapes[c], kHeads[c], kLengths[c], rng);
    ThreadPool pool(2);
    CpuBackend cpu(pool);
    const std::vector<float> f16 = seqs.run(cpu, DType::F16, unchanged);
    const std::vector<float> f32 = seqs.run(cpu, DType::F32, unchanged);
    const int hd = seqs.shape.head_dim, group = seqs.n_heads / seqs.shape.n_kv_heads;
    size_t row = 0;
    double worst = 0, worst_ratio = 0;
    for (const auto& tokens : seqs.batches()) {
      for (auto [seq, pos] : tokens) {
        for (int h = 0; h < seqs.n_heads; ++h, ++row) {
          const float* q = seqs.q[size_t(seq)].data() + size_t(pos) * seqs.q_row() + size_t(h) * hd;
          double delta = 0, vmax = 0;
          for (int p = 0; p <= pos; ++p) {
            const size_t at = size_t(p) * seqs.kv_row() + size_t(h / group) * hd;
            double qk = 0, qsum = 0;
            for (int d = 0; d < hd; ++d) {
              qk += std::fabs(q[d]) * std::fabs(seqs.k[size_t(seq)][at + size_t(d)]);
              qsum += std::fabs(q[d]);
              vmax = std::max(vmax, double(std::fabs(seqs.v[size_t(seq)][at + size_t(d)])));
            }
            delta = std::max(delta, (u * qk + subnormal * qsum) / std::sqrt(double(hd)));
          }
          const double bound = u * vmax + subnormal + std::expm1(2 * delta) * vmax;
          for (int d = 0; d < hd; ++d) {
            const double want = f32[row * size_t(hd) + size_t(d)], got = f16[row * size_t(hd) + size_t(d)];
            const double diff = std::fabs(got - want);
            ASSERT_LE(diff, bound + 2e-5 * (1 + std::fabs(want))) << "shape " << c << " row " << row << " dim " << d;
            worst = std::max(worst, diff);
            worst_ratio = std::max(worst_ratio, diff / bound);
          }
        }
      }
    }
    std::printf("shape %d: F16 vs F32 cache, max |diff| %.3g, at most %.2f of the bound\n", c, worst, worst_ratio);
  }
}

// ---------------------------------------------------------------- engine

// How many leading greedy tokens the F16-KV run of each golden prompt
// shares with the F32-KV run. F16 K/V move every logit a little, so the
// runs can only part where two candidates are nearly tied.
std::vector<size_t> greedy_agreement(TestModel& m, const nlohmann::json& golden, int max_tokens) {
  std::vector<Request> rs;
  for (size_t i = 0; i < golden["cases"].size(); ++i) {
    rs.push_back(
        greedy_request(std::to_string(i), golden["cases"][i]["prompt_ids"].get<std::vector<int32_t>>(), max_tokens));
  }
  EngineConfig f16_config = small_engine_config();
  f16_config.kv_cache_dtype = DType::F16;
  LLMEngine f32(*m.model, *m.tokenizer, *m.backend, small_engine_config());
  LLMEngine f16(*m.model, *m.tokenizer, *m.backend, f16_config);
  const std::vector<Generated> a = run_all(f32, rs), b = run_all(f16, rs);
  std::vector<size_t> same;
  for (size_t i = 0; i < a.size(); ++i) {
    same.push_back(size_t(std::mismatch(a[i].tokens.begin(), a[i].tokens.end(), b[i].tokens.begin(), b[i].tokens.end())
                              .first -
                          a[i].tokens.begin()));
    std::printf("golden case %zu: F16 KV agrees with F32 KV on %zu of %zu greedy tokens\n", i, same.back(),
                a[i].tokens.size());
  }
  return same;
}

// (d) On the golden prompts the F16 run never parts from the F32 run: all
// 64 tokens of stories260K's 4 cases and all 32 of SmolLM2's 5 agree.
TEST(KvCacheF16, GreedyTokensAgreeWithF32OnStories260KGoldenPrompts) {
  TestModel m = load_stories();
  for (size_t same : greedy_agreement(m, read_json(data_path("stories260K/golden.json")), 64)) EXPECT_EQ(same, 64u);
}

TEST(KvCacheF16, GreedyTokensAgreeWithF32OnSmolLM2GoldenPrompts) {
  if (!std::filesystem::exists(smollm2_path())) GTEST_SKIP() << "run tools/setup_model.sh to install SmolLM2";
  TestModel m = load_test_model(smollm2_path(), smollm2_path());
  for (size_t same : greedy_agreement(m, read_json(data_path("smollm2/golden.json")), 32)) EXPECT_EQ(same, 32u);
}

}  // namespace
}  // namespace tidal::test
