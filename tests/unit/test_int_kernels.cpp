// The integer matmul path (W8A8 for int8 and int8-g32, W4A8 for int4-g*,
// W8A16 and W4A16 for w8a16-g32 and w4a16-g*): the kernels
// against a float64 product of the very same integers, against the float
// product of the unquantized weights within a derived quantization bound,
// batch invariance, the SIMD dequantizer, tensor-parallel shards of integer
// weights, and an int8 / int4 variant of stories260K generating text.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "core/dequantize.h"
#include "core/error.h"
#include "core/thread_pool.h"
#include "cpu/cpu_backend.h"
#include "cpu/dequant_rows.h"
#include "cpu/int_activations.h"
#include "cpu/int_kernels.h"
#include "model/llama_forward.h"
#include "model/loader.h"
#include "model/quantize_matrix.h"
#include "model/variant.h"
#include "parallel/parallel_config.h"
#include "parallel/shard.h"
#include "support/test_models.h"

namespace tidal::test {
namespace {

constexpr double kUnitRoundoff = 0x1p-24;
constexpr int64_t kCols[] = {1, 7, 63, 65, 172, 576, 1000};

std::string label(DType type, int64_t rows, int64_t cols, int n) {
  return std::string(dtype_name(type)) + " rows=" + std::to_string(rows) + " cols=" + std::to_string(cols) +
         " n=" + std::to_string(n);
}

bool same_bits(const float* a, const float* b, size_t n) { return std::memcmp(a, b, n * sizeof(float)) == 0; }

// Values in [-1, 1] times a per-row factor spanning 1e-2 .. 1e2, so rows and
// groups get very different scales; row 1 (when there is one) is all zero.
std::vector<float> random_matrix(std::mt19937& rng, int64_t rows, int64_t cols) {
  std::uniform_real_distribution<float> value(-1.0f, 1.0f), exponent(-2.0f, 2.0f);
  std::vector<float> m(size_t(rows * cols));
  for (int64_t r = 0; r < rows; ++r) {
    const float factor = r == 1 ? 0.0f : std::pow(10.0f, exponent(rng));
    for (int64_t k = 0; k < cols; ++k) m[size_t(r * cols + k)] = factor * value(rng);
  }
  return m;
}

// An unquantized matrix and its quantization by the reference quantizer.
struct QuantizedMatrix {
  std::vector<float> source;
  std::unique_ptr<OwnedMatrix> owned;
  const Weight& view() const { return owned->view; }
};

QuantizedMatrix quantized(std::vector<float> source, int64_t rows, int64_t cols, DType type) {
  QuantizedMatrix q;
  q.source = std::move(source);
  const Weight f32{DType::F32, rows, cols, reinterpret_cast<const uint8_t*>(q.source.data())};
  q.owned = quantize_matrix(f32, type);
  return q;
}

QuantizedMatrix random_quantized(std::mt19937& rng, DType type, int64_t rows, int64_t cols) {
  return quantized(random_matrix(rng, rows, cols), rows, cols, type);
}

// The activation quantization the kernels promise (cpu/int_activations.h),
// written out independently: scale max|x| / 127 per token (per block of 32
// for int8-g32; max|x| / 32767 per token for the A16 formats), round half
// away from zero.
struct ReferenceTokens {
  std::vector<int> codes;  // [token][cols]
  std::vector<float> scales;  // [token][blocks]
  int64_t block = 0, blocks = 0;

  const float* token_scales(int t) const { return scales.data() + t * blocks; }
  float scale_at(int t, int64_t k) const { return token_scales(t)[k / block]; }
};

ReferenceTokens quantize_reference(DType type, const std::vector<float>& x, int n, int64_t cols) {
  ReferenceTokens r;
  r.block = type == DType::I8_G32 ? cpu::kActivationBlock : cols;
  r.blocks = (cols + r.block - 1) / r.block;
  const float code_max = dtype_is_a16(type) ? float(cpu::kA16CodeMax) : 127.0f;
  for (int t = 0; t < n; ++t) {
    for (int64_t b0 = 0; b0 < cols; b0 += r.block) {
      const float* xb = x.data() + t * cols + b0;
      const int64_t len = std::min(r.block, cols - b0);
      float amax = 0.0f;
      for (int64_t k = 0; k < len; ++k) amax = std::max(amax, std::fabs(xb[k]));
      const float scale = amax / code_max;
      r.scales.push_back(scale);
      for (int64_t k = 0; k < len; ++k) {
        const float q = scale != 0.0f ? std::round(xb[k] / scale) : 0.0f;
        r.codes.push_back(int(std::clamp(q, -code_max, code_max)));
      }
    }
  }
  return r;
}

// Element k of row r: its integer weight q and the scale and offset it is
// under (it decodes to scale * q + offset; the offset is 0 but for the
// asymmetric A16 formats, whose q is the unsigned code).
struct IntElement {
  int q;
  float scale;
  float offset = 0.0f;
};

IntElement element(const Weight& w, int64_t r, int64_t k) {
  const uint8_t* row = w.row(r);
  const float* s = w.row_scales(r);
  if (w.type == DType::I8) return {int(row[k]) - 128, s[0]};
  const int64_t g = dtype_group_size(w.type);
  if (w.type == DType::I8_G32) return {int(row[k]) - 128, s[k / g]};
  const int code = !dtype_packs_nibbles(w.type) ? row[k] : k % 2 == 0 ? row[k / 2] & 0x0f : row[k / 2] >> 4;
  if (dtype_is_a16(w.type)) return {code, s[k / g], s[dtype_scales_per_row(w.type, w.cols) / 2 + k / g]};
  return {code - 8, s[k / g]};
}

// The exact product the kernels compute, in float64 from the same integers
// (each group's integer dot product times its weight and activation
// scales, summed), and the sum of the magnitudes of its terms. Activation
// blocks (a whole token, or 32 for int8-g32) hold whole weight groups.
struct IntProduct {
  double value = 0, magnitude = 0;
};

IntProduct int_product(const Weight& w, int64_t r, const int* q, const ReferenceTokens& ref, int t) {
  IntProduct p;
  const int64_t group = w.type == DType::I8 ? w.cols : dtype_group_size(w.type);
  for (int64_t g0 = 0; g0 < w.cols; g0 += group) {
    int64_t dot = 0, abs_dot = 0, sum = 0, abs_sum = 0;
    double scale = 0, offset = 0;
    for (int64_t k = g0; k < std::min(w.cols, g0 + group); ++k) {
      const IntElement e = element(w, r, k);
      dot += int64_t(e.q) * q[k];
      abs_dot += std::abs(int64_t(e.q) * q[k]);
      sum += q[k];
      abs_sum += std::abs(q[k]);
      scale = e.scale;
      offset = e.offset;
    }
    const double sx = ref.scale_at(t, g0);
    p.value += (scale * double(dot) + offset * double(sum)) * sx;
    p.magnitude += (std::fabs(scale) * double(abs_dot) + std::fabs(offset) * double(abs_sum)) * sx;
  }
  return p;
}

// How far the kernel may be from the float64 product of its own integers.
// I8 rounds the exact integer dot product once when converting it and
// twice in the two multiplies: within 3u of the value (4u with slack). I4
// adds each lane's exact partial product into a float accumulator with one
// fused multiply-add per chunk (at most cols/32 + 1 of them), then a lane
// tree of at most 4 additions and the multiply by the token's scale: each
// term is rounded at most D = cols/32 + 6 times, so the error is within
// D u times the sum of the terms' magnitudes, doubled for slack. I8_G32
// rounds as I4 does, plus the product of the two scales: within the same
// bound. The A16 formats round each group's integer sum when converting it,
// then add one fused multiply-add per group and one per 16 (8) groups'
// offsets: within the same bound with cols/32 + 8 roundings. All are
// about 1e-6 of the magnitude or less for these shapes.
double kernel_bound(const Weight& w, const IntProduct& p) {
  if (w.type == DType::I8) return 4 * kUnitRoundoff * std::fabs(p.value);
  const double depth = double(dtype_padded_cols(w.type, w.cols)) / 32 + (dtype_is_a16(w.type) ? 8 : 6);
  return 2 * depth * kUnitRoundoff * p.magnitude;
}

// The product of the unquantized matrix row and activations, in float64.
double exact_product(const std::vector<float>& m, int64_t r, const float* x, int64_t cols) {
  double s = 0;
  for (int64_t k = 0; k < cols; ++k) s += double(m[size_t(r * cols + k)]) * x[k];
  return s;
}

// Quantization error bound. With w = w~ + dw (w~ = s_w q_w + offset, |dw| <= s_w/2,
// s_w the scale of w's row or group) and x = x~ + dx (|dx| <= s_x/2):
//   w x - w~ x~ = w~ dx + dw x~ + dw dx,
// so |y_exact - y_int| <= sum_k |w~_k| s_x/2 + s_w(k)/2 |x~_k| + s_w(k) s_x/4,
// plus the kernel's own rounding (kernel_bound); s_x is that of x_k's block.
double quantization_bound(const Weight& w, int64_t r, const int* q, const ReferenceTokens& ref, int t) {
  double bound = 0;
  for (int64_t k = 0; k < w.cols; ++k) {
    const IntElement e = element(w, r, k);
    const float sx = ref.scale_at(t, k);
    const double w_deq = double(e.scale) * e.q + e.offset, x_deq = double(sx) * q[k];
    bound += std::fabs(w_deq) * sx / 2 + double(e.scale) / 2 * std::fabs(x_deq) + double(e.scale) * sx / 4;
  }
  return bound;
}

// Activations in [-1, 1] with a few large outliers (what makes per-token
// activation scales coarse), and token 1 all zero.
std::vector<float> random_activations(std::mt19937& rng, int n, int64_t cols) {
  std::uniform_real_distribution<float> value(-1.0f, 1.0f);
  std::uniform_int_distribution<int64_t> position(0, cols - 1);
  std::vector<float> x(size_t(n * cols));
  for (float& v : x) v = value(rng);
  for (int t = 0; t < n; ++t) {
    if (t == 1) {
      std::fill(x.begin() + t * cols, x.begin() + (t + 1) * cols, 0.0f);
    } else {
      x[size_t(t * cols + position(rng))] = 8.0f * value(rng);
    }
  }
  return x;
}

// ------------------------------------------------------------ activations

// Codes are round(x / scale) with ties away from zero, clamped to +-127,
// and I8 codes sit in element order, zero-padded, on every ISA.
TEST(IntActivations, CodesRoundHalfAwayFromZeroAndPadWithZeros) {
  // max|x| = 127 makes the scale exactly 1, so x / scale is x itself.
  const std::vector<float> x = {127.0f, 0.5f, 1.5f, 2.5f, -0.5f, -1.5f, -2.5f, 126.5f, -126.5f, 0.49999997f, -3.5000002f};
  const std::vector<int> want = {127, 1, 2, 3, -1, -2, -3, 127, -127, 0, -4};
  const int64_t cols = int64_t(x.size());
  const cpu::ActivationLayout layout = cpu::activation_layout(DType::I8, cols);
  std::vector<uint8_t> buffer(layout.stride + 64);
  uint8_t* aligned = buffer.data() + (64 - reinterpret_cast<uintptr_t>(buffer.data()) % 64) % 64;
  cpu::quantize_activations(DType::I8, layout, x.data(), cols, 0, 1, aligned);
  const cpu::QuantizedActivations q{layout, aligned};
  EXPECT_EQ(q.scale(0), 1.0f);
  for (int64_t k = 0; k < dtype_padded_cols(DType::I8, cols); ++k) {
    EXPECT_EQ(int(q.codes(0)[k]), k < cols ? want[size_t(k)] : 0) << "element " << k;
  }
}

// I8_G32 quantizes each block of 32 with its own scale: a block of large
// values leaves the next block's codes fine, an all-zero block and the
// padding get scale 0 and codes 0.
TEST(IntActivations, Int8G32ScalesEachBlockOfThirtyTwo) {
  constexpr int64_t cols = 100;  // blocks 0..2 whole, block 3 four elements, padded to 128
  std::vector<float> x(size_t(cols), 0.0f);
  const std::vector<float> block0 = {127.0f, 0.5f, 1.5f, -2.5f}, block1 = {508.0f, 2.0f, 6.0f, -10.0f},
                           block3 = {254.0f, 1.0f, -3.0f, 0.0f};
  const std::vector<int> want0 = {127, 1, 2, -3}, want1 = {127, 1, 2, -3}, want3 = {127, 1, -2, 0};
  std::copy(block0.begin(), block0.end(), x.begin());
  std::copy(block1.begin(), block1.end(), x.begin() + 32);
  std::copy(block3.begin(), block3.end(), x.begin() + 96);
  const cpu::ActivationLayout layout = cpu::activation_layout(DType::I8_G32, cols);
  std::vector<uint8_t> buffer(layout.stride + 64);
  uint8_t* aligned = buffer.data() + (64 - reinterpret_cast<uintptr_t>(buffer.data()) % 64) % 64;
  cpu::quantize_activations(DType::I8_G32, layout, x.data(), cols, 0, 1, aligned);
  const cpu::QuantizedActivations q{layout, aligned};
  const std::vector<float> want_scales = {1.0f, 4.0f, 0.0f, 2.0f};
  for (size_t b = 0; b < want_scales.size(); ++b) EXPECT_EQ(q.block_scales(0)[b], want_scales[b]) << "block " << b;
  for (int64_t k = 0; k < dtype_padded_cols(DType::I8_G32, cols); ++k) {
    int want = 0;
    if (k < 4) want = want0[size_t(k)];
    if (k >= 32 && k < 36) want = want1[size_t(k - 32)];
    if (k >= 96 && k < 100) want = want3[size_t(k - 96)];
    EXPECT_EQ(int(q.codes(0)[k]), want) << "element " << k;
  }
}

// The A16 formats quantize a whole token to int16 by max|x| / 32767 with the
// same rounding, and keep each weight group's code sum; the SIMD builds
// reorder each chunk of 64 (W4A16: even elements, then odd; W8A16: the
// quarters 0, 2, 1, 3) to meet the weight bytes as they widen.
TEST(IntActivations, A16CodesAreInt16PerTokenWithGroupSums) {
  constexpr int64_t cols = 100;  // padded to 128: groups of 32 are 0..3, of 128 just 0
  std::vector<float> x(static_cast<size_t>(cols));
  for (int64_t k = 0; k < cols; ++k) x[size_t(k)] = float(k % 7) - 3.0f + 0.5f;  // ties at every element
  x[5] = 32767.0f;  // scale exactly 1
  x[6] = -32766.5f;
  for (DType type : {DType::W8A16_G32, DType::W4A16_G32, DType::W4A16_G128}) {
    SCOPED_TRACE(dtype_name(type));
    const cpu::ActivationLayout layout = cpu::activation_layout(type, cols);
    std::vector<uint8_t> buffer(layout.stride + 64);
    uint8_t* aligned = buffer.data() + (64 - reinterpret_cast<uintptr_t>(buffer.data()) % 64) % 64;
    cpu::quantize_activations(type, layout, x.data(), cols, 0, 1, aligned);
    const cpu::QuantizedActivations q{layout, aligned};
    EXPECT_EQ(q.scale(0), 1.0f);
    const int64_t padded = dtype_padded_cols(type, cols), g = dtype_group_size(type);
    std::vector<int> want(size_t(padded), 0);
    for (int64_t k = 0; k < cols; ++k) want[size_t(k)] = int(std::round(x[size_t(k)]));  // half away from zero
    EXPECT_EQ(want[0], -3);  // -2.5
    EXPECT_EQ(want[6], -32767);
#if defined(TIDAL_CPU_SCALAR)
    const bool split = false;
#else
    const bool split = true;
#endif
    for (int64_t k = 0; k < padded; ++k) {
      const int64_t chunk = k / 64 * 64, i = k % 64, quarter_at[4] = {0, 2, 1, 3};
      const int64_t at = !split ? k : dtype_packs_nibbles(type) ? chunk + (i % 2) * 32 + i / 2 : chunk + quarter_at[i / 16] * 16 + i % 16;
      EXPECT_EQ(int(q.codes16(0)[at]), want[size_t(k)]) << "element " << k;
    }
    for (int64_t group = 0; group < padded / g; ++group) {
      int64_t sum = 0;
      for (int64_t k = group * g; k < (group + 1) * g; ++k) sum += want[size_t(k)];
      EXPECT_EQ(q.group_sums(0)[group], float(sum)) << "group " << group;
    }
    for (int64_t group = padded / g; group < int64_t(layout.group_sum_bytes / sizeof(float)); ++group) {
      EXPECT_EQ(q.group_sums(0)[group], 0.0f) << "padding group " << group;
    }
  }
}

// ------------------------------------------------------------ matmul

// (a) against the float64 product of the same integers (kernel_bound), and
// (b) against the float64 product of the unquantized matrix
// (quantization_bound). Also reports how much of bound (b) the worst case
// uses, and requires that to be a real fraction: a bound 20x looser than
// anything observed would be testing nothing.
TEST(IntMatmul, MatchesIntegerReferenceAndQuantizationBound) {
  ThreadPool pool(2);
  CpuBackend cpu(pool);
  std::mt19937 rng(11);
  for (DType type : kIntDTypes) {
    double worst_used = 0;
    for (int64_t cols : kCols) {
      for (int64_t rows : {1, 5, 37, 193}) {
        const QuantizedMatrix m = random_quantized(rng, type, rows, cols);
        for (int n : {1, 2, 3, 4, 5, 17, 64}) {
          SCOPED_TRACE(label(type, rows, cols, n));
          const std::vector<float> x = random_activations(rng, n, cols);
          const ReferenceTokens ref = quantize_reference(type, x, n, cols);
          std::vector<float> y(size_t(n * rows), NAN);
          cpu.matmul(m.view(), x.data(), n, y.data());
          for (int t = 0; t < n; ++t) {
            const int* q = ref.codes.data() + t * cols;
            for (int64_t r = 0; r < rows; ++r) {
              const float got = y[size_t(t * rows + r)];
              const IntProduct want = int_product(m.view(), r, q, ref, t);
              const double kernel = kernel_bound(m.view(), want);
              ASSERT_LE(std::fabs(got - want.value), kernel) << "t=" << t << " r=" << r << " want " << want.value;
              const double exact = exact_product(m.source, r, x.data() + t * cols, cols);
              const double bound = quantization_bound(m.view(), r, q, ref, t) + kernel;
              ASSERT_LE(std::fabs(got - exact), bound) << "t=" << t << " r=" << r << " exact " << exact;
              if (bound > 0) worst_used = std::max(worst_used, std::fabs(got - exact) / bound);
            }
          }
        }
      }
    }
    std::printf("[ info     ] %s: worst error is %.2f of the quantization bound\n", std::string(dtype_name(type)).c_str(),
                worst_used);
    EXPECT_GT(worst_used, 0.05) << dtype_name(type);
  }
}

// (c) Each token's outputs are bit-identical computed alone, inside a batch
// of 17 (at two offsets) and of 64, with 1 and 2 threads. The shapes cover
// the row split (193 and 1500 rows, the latter over two cache panels and
// streamed from far-apart regions when alone), the token split (5 rows),
// ragged tiles and padded rows.
TEST(IntMatmul, BatchInvariantAcrossBatchesTilesAndThreads) {
  ThreadPool pool1(1), pool2(2);
  CpuBackend cpu1(pool1), cpu2(pool2);
  std::mt19937 rng(12);
  constexpr int kBatch = 64;
  for (DType type : kIntDTypes) {
    for (int64_t cols : {65, 172, 576}) {
      for (int64_t rows : {5, 193, 1500}) {
        SCOPED_TRACE(label(type, rows, cols, kBatch));
        const QuantizedMatrix m = random_quantized(rng, type, rows, cols);
        const std::vector<float> x = random_activations(rng, kBatch, cols);
        std::vector<float> batch1(size_t(kBatch * rows)), batch2(batch1.size());
        cpu1.matmul(m.view(), x.data(), kBatch, batch1.data());
        cpu2.matmul(m.view(), x.data(), kBatch, batch2.data());
        ASSERT_TRUE(same_bits(batch1.data(), batch2.data(), batch1.size()));
        for (CpuBackend* cpu : {&cpu1, &cpu2}) {
          std::vector<float> part(size_t(17 * rows));
          for (int offset : {0, 30}) {
            cpu->matmul(m.view(), x.data() + offset * cols, 17, part.data());
            ASSERT_TRUE(same_bits(part.data(), batch1.data() + offset * rows, part.size())) << "offset " << offset;
          }
          for (int t = 0; t < kBatch; t += 3) {
            cpu->matmul(m.view(), x.data() + t * cols, 1, part.data());
            ASSERT_TRUE(same_bits(part.data(), batch1.data() + t * rows, size_t(rows))) << "token " << t;
          }
        }
      }
    }
  }
}

// The kernels directly: a stream over rows and a sweep of panels of the same
// rows give the same bits for every token-group size.
TEST(IntMatmul, StreamingAndPanelOrdersAgree) {
  std::mt19937 rng(13);
  for (DType type : kIntDTypes) {
    const int64_t rows = 700, cols = 172;
    const QuantizedMatrix m = random_quantized(rng, type, rows, cols);
    for (int n : {1, 2, 3, 4, 9}) {
      SCOPED_TRACE(label(type, rows, cols, n));
      const std::vector<float> x = random_activations(rng, n, cols);
      const cpu::ActivationLayout layout = cpu::activation_layout(type, cols);
      cpu::ScratchBuffer buffer;
      auto* data = reinterpret_cast<uint8_t*>(buffer.get(layout.stride * size_t(n) / sizeof(float)));
      cpu::quantize_activations(type, layout, x.data(), cols, 0, n, data);
      const cpu::QuantizedActivations q{layout, data};
      const cpu::IntDotRows dot_rows = cpu::int_dot_rows_for(type);
      std::vector<float> streamed(size_t(n * rows)), panel(streamed.size());
      dot_rows(m.view(), 0, rows, q, 0, n, streamed.data(), rows, cpu::RowOrder::kStream);
      dot_rows(m.view(), 0, rows, q, 0, n, panel.data(), rows, cpu::RowOrder::kPanel);
      ASSERT_TRUE(same_bits(streamed.data(), panel.data(), streamed.size()));
    }
  }
}

TEST(IntMatmul, RejectsRowsPastTheIntegerLimit) {
  ThreadPool pool(1);
  CpuBackend cpu(pool);
  const int64_t cols = cpu::kMaxIntCols + 1;
  std::vector<uint8_t> codes(dtype_row_bytes(DType::I8, cols), 128);
  const float scale = 1.0f;
  const Weight w{DType::I8, 1, cols, codes.data(), &scale};
  const std::vector<float> x(size_t(cols), 1.0f);
  float y = 0;
  try {
    cpu.matmul(w, x.data(), 1, &y);
    FAIL() << "accepted a row past the limit";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kUnsupported);
  }
}

// ------------------------------------------------------------ dequantization

// (d) The SIMD dequantizer and embed give exactly dequantize_weight_row's
// floats, and write nothing past a row's columns.
TEST(IntDequantize, RowsAndEmbedEqualTheReferenceDecoder) {
  ThreadPool pool(2);
  CpuBackend cpu(pool);
  std::mt19937 rng(14);
  for (DType type : kIntDTypes) {
    for (int64_t cols : {1, 7, 16, 63, 64, 65, 172, 576, 1000}) {
      SCOPED_TRACE(label(type, 9, cols, 0));
      const int64_t rows = 9, stride = cols + 5;
      const QuantizedMatrix m = random_quantized(rng, type, rows, cols);
      std::vector<float> want(size_t(rows * cols)), got(size_t(rows * stride), -7.0f);
      for (int64_t r = 0; r < rows; ++r) dequantize_weight_row(m.view(), r, want.data() + r * cols);
      cpu::dequantize_rows(m.view(), 0, rows, got.data(), stride);
      for (int64_t r = 0; r < rows; ++r) {
        ASSERT_TRUE(same_bits(got.data() + r * stride, want.data() + r * cols, size_t(cols))) << "row " << r;
        for (int64_t k = cols; k < stride; ++k) ASSERT_EQ(got[size_t(r * stride + k)], -7.0f) << "row " << r;
      }
      const std::vector<int32_t> ids = {8, 0, 1, 8, 3};
      std::vector<float> embedded(ids.size() * size_t(cols));
      cpu.embed(m.view(), ids.data(), int(ids.size()), embedded.data());
      for (size_t i = 0; i < ids.size(); ++i) {
        ASSERT_TRUE(same_bits(embedded.data() + i * cols, want.data() + ids[i] * cols, size_t(cols))) << "id " << i;
      }
    }
  }
}

// The asymmetric formats repack a GGUF Q4_1 row (an f16 step d and minimum
// m per 32 weights, codes 0..15 that reach both 0 and 15) exactly: the
// group's minimum is m and its range 15 d, so every code comes back (times
// 17 in 8 bits) and each weight decodes to d q + m up to the rounding of
// recomputing d from the range (a few units in the last place).
TEST(IntDequantize, AsymmetricFormatsRepackQ4_1Exactly) {
  std::mt19937 rng(18);
  constexpr int64_t rows = 6, cols = 576;
  const std::vector<float> source = random_matrix(rng, rows, cols);
  std::vector<uint8_t> q4_1(size_t(rows) * dtype_row_bytes(DType::Q4_1, cols));
  for (int64_t r = 0; r < rows; ++r) {
    quantize_row(DType::Q4_1, source.data() + r * cols, q4_1.data() + r * dtype_row_bytes(DType::Q4_1, cols), cols);
  }
  const Weight base{DType::Q4_1, rows, cols, q4_1.data()};
  for (DType type : {DType::W8A16_G32, DType::W4A16_G32}) {
    SCOPED_TRACE(dtype_name(type));
    const auto repacked = quantize_matrix(base, type);
    std::vector<float> want(static_cast<size_t>(cols)), got(static_cast<size_t>(cols));
    for (int64_t r = 0; r < rows; ++r) {
      dequantize_weight_row(base, r, want.data());
      dequantize_weight_row(repacked->view, r, got.data());
      for (int64_t k = 0; k < cols; ++k) {
        const IntElement e = element(repacked->view, r, k);
        const float group_max = *std::max_element(want.begin() + k / 32 * 32, want.begin() + k / 32 * 32 + 32);
        const float group_min = *std::min_element(want.begin() + k / 32 * 32, want.begin() + k / 32 * 32 + 32);
        const float step = (group_max - group_min) / 15.0f;
        if (step == 0.0f) continue;  // the all-zero row: scale 0
        const int code = int(std::lround((want[size_t(k)] - group_min) / step));
        ASSERT_EQ(e.q, type == DType::W8A16_G32 ? 17 * code : code) << "row " << r << " element " << k;
        ASSERT_NEAR(got[size_t(k)], want[size_t(k)], 4 * kUnitRoundoff * (std::fabs(group_min) + std::fabs(group_max)))
            << "row " << r << " element " << k;
      }
    }
  }
}

// ------------------------------------------------------------ sharding

// A one-layer model whose matrices are all `type`: 4 query heads of 64,
// 2 KV heads, 512 FFN units, so a 2-way split puts every column cut (128
// and 256) on a group of any size.
struct SmallModel {
  Model model;
  std::vector<QuantizedMatrix> matrices;
};

SmallModel small_model(std::mt19937& rng, DType type, int64_t hidden = 512) {
  SmallModel s;
  ModelConfig& c = s.model.config;
  c.n_layers = 1;
  c.n_heads = 4;
  c.n_kv_heads = 2;
  c.head_dim = 64;
  c.dim = 256;
  c.hidden_dim = int(hidden);
  c.vocab_size = 40;
  auto matrix = [&](int64_t rows, int64_t cols) {
    s.matrices.push_back(random_quantized(rng, type, rows, cols));
    return s.matrices.back().view();
  };
  s.matrices.reserve(9);
  LayerWeights& l = s.model.layers.emplace_back();
  l.attn_norm.assign(size_t(c.dim), 1.0f);
  l.ffn_norm.assign(size_t(c.dim), 1.0f);
  l.wq = matrix(c.dim, c.dim);
  l.wk = matrix(128, c.dim);
  l.wv = matrix(128, c.dim);
  l.wo = matrix(c.dim, c.dim);
  l.w_gate = matrix(hidden, c.dim);
  l.w_up = matrix(hidden, c.dim);
  l.w_down = matrix(c.dim, hidden);
  s.model.token_embedding = matrix(c.vocab_size, c.dim);
  s.model.lm_head = matrix(c.vocab_size, c.dim);
  s.model.final_norm.assign(size_t(c.dim), 1.0f);
  return s;
}

ParallelConfig tp2() {
  ParallelConfig p;
  p.tp = 2;
  return p;
}

// (e) Row shards (column-parallel wq, w_up, the vocab slice of the LM head)
// give exactly the unsharded rows' outputs. Column shards (row-parallel wo,
// w_down) hold exactly the full rows' values; their partial products add up
// to the unsharded product within float rounding when both halves of the
// activations share their largest magnitude (then every rank quantizes them
// with the full row's scale), and within the quantization bound otherwise.
TEST(IntSharding, ShardsComputeTheUnshardedProducts) {
  ThreadPool pool(2);
  CpuBackend cpu(pool);
  std::mt19937 rng(15);
  for (DType type : kIntDTypes) {
    SCOPED_TRACE(dtype_name(type));
    const SmallModel full = small_model(rng, type);
    const ModelConfig& c = full.model.config;
    std::vector<Model> shards;
    for (int rank = 0; rank < 2; ++rank) shards.push_back(shard_model(full.model, shard_layout(c, tp2(), rank)));
    const int n = 5;

    auto run = [&](const Weight& w, const float* x) {
      std::vector<float> y(size_t(n * w.rows));
      cpu.matmul(w, x, n, y.data());
      return y;
    };
    const std::vector<float> x = random_activations(rng, n, c.dim);
    const std::vector<float> up_full = run(full.model.layers[0].w_up, x.data());
    const std::vector<float> head_full = run(full.model.lm_head, x.data());
    for (int rank = 0; rank < 2; ++rank) {
      const int64_t units = c.hidden_dim / 2, vocab0 = rank == 0 ? 0 : c.vocab_size / 2;
      const std::vector<float> up = run(shards[size_t(rank)].layers[0].w_up, x.data());
      const std::vector<float> head = run(shards[size_t(rank)].lm_head, x.data());
      const int64_t vocab = shards[size_t(rank)].lm_head.rows;
      for (int t = 0; t < n; ++t) {
        ASSERT_TRUE(same_bits(up.data() + t * units, up_full.data() + t * c.hidden_dim + rank * units, size_t(units)));
        ASSERT_TRUE(same_bits(head.data() + t * vocab, head_full.data() + t * c.vocab_size + vocab0, size_t(vocab)));
      }
    }

    const Weight& down = full.model.layers[0].w_down;
    const int64_t half = down.cols / 2;
    for (int rank = 0; rank < 2; ++rank) {
      const Weight& part = shards[size_t(rank)].layers[0].w_down;
      ASSERT_EQ(part.cols, half);
      std::vector<float> full_row(size_t(down.cols)), part_row(static_cast<size_t>(half));
      for (int64_t r = 0; r < down.rows; ++r) {
        dequantize_weight_row(down, r, full_row.data());
        dequantize_weight_row(part, r, part_row.data());
        ASSERT_TRUE(same_bits(part_row.data(), full_row.data() + rank * half, size_t(half))) << "row " << r;
      }
    }
    for (bool shared_max : {true, false}) {
      std::vector<float> h = random_activations(rng, n, down.cols);
      if (shared_max) {
        for (int t = 0; t < n; ++t) {
          h[size_t(t * down.cols)] = 9.0f;
          h[size_t(t * down.cols + half)] = -9.0f;
        }
      }
      const std::vector<float> whole = run(down, h.data());
      const ReferenceTokens whole_codes = quantize_reference(type, h, n, down.cols);
      std::vector<float> parts[2];
      ReferenceTokens part_codes[2];
      for (int rank = 0; rank < 2; ++rank) {
        std::vector<float> slice;
        for (int t = 0; t < n; ++t) {
          const auto row = h.begin() + t * down.cols + rank * half;
          slice.insert(slice.end(), row, row + half);
        }
        parts[rank] = run(shards[size_t(rank)].layers[0].w_down, slice.data());
        part_codes[rank] = quantize_reference(type, slice, n, half);
      }
      for (int t = 0; t < n; ++t) {
        for (int64_t r = 0; r < down.rows; ++r) {
          const size_t at = size_t(t * down.rows + r);
          const int* q = whole_codes.codes.data() + t * down.cols;
          // The rounding of the three results; with a shared maximum their
          // integer products add up exactly, otherwise each rank also
          // quantized its activations with its own scale (int8-g32 splits
          // on its blocks, so its ranks' scales are always the whole's).
          double bound = kernel_bound(down, int_product(down, r, q, whole_codes, t));
          if (!shared_max) bound += quantization_bound(down, r, q, whole_codes, t);
          for (int rank = 0; rank < 2; ++rank) {
            const Weight& part = shards[size_t(rank)].layers[0].w_down;
            const int* qr = part_codes[rank].codes.data() + t * half;
            if (shared_max || type == DType::I8_G32) {
              EXPECT_EQ(part_codes[rank].scale_at(t, 0), whole_codes.scale_at(t, rank * half));
            }
            bound += kernel_bound(part, int_product(part, r, qr, part_codes[rank], t));
            if (!shared_max) bound += quantization_bound(part, r, qr, part_codes[rank], t);
          }
          const double sum = double(parts[0][at]) + parts[1][at];
          ASSERT_LE(std::fabs(sum - whole[at]), bound) << "shared max " << shared_max << " t=" << t << " r=" << r;
        }
      }
    }
  }
}

TEST(IntSharding, RefusesToSplitAnInt4Group) {
  std::mt19937 rng(16);
  // 2 x 192 FFN units: rank 1's columns of w_down start at 192, inside a group of 128.
  const SmallModel full = small_model(rng, DType::I4_G128, 384);
  try {
    shard_model(full.model, shard_layout(full.model.config, tp2(), 1));
    FAIL() << "split an int4 group";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kUnsupported);
    EXPECT_NE(std::string(e.what()).find("group of 128"), std::string::npos) << e.what();
  }
  const SmallModel int8 = small_model(rng, DType::I8, 384);  // int8 splits anywhere
  EXPECT_NO_THROW(shard_model(int8.model, shard_layout(int8.model.config, tp2(), 1)));
}

// convert_weights_to_f32 (what --f32 does at load) decodes integer
// matrices through the reference decoder, scales included.
TEST(IntDequantize, ConvertWeightsToF32DecodesIntegerMatrices) {
  std::mt19937 rng(17);
  for (DType type : kIntDTypes) {
    const SmallModel quantized_model = small_model(rng, type);
    Model converted;  // the same views; Model itself is move-only
    converted.config = quantized_model.model.config;
    converted.token_embedding = quantized_model.model.token_embedding;
    converted.lm_head = quantized_model.model.lm_head;
    converted.layers = quantized_model.model.layers;
    convert_weights_to_f32(converted);
    const Weight& before = quantized_model.model.layers[0].w_down;
    const Weight& after = converted.layers[0].w_down;
    ASSERT_EQ(after.type, DType::F32) << dtype_name(type);
    std::vector<float> want(size_t(before.cols));
    for (int64_t r = 0; r < before.rows; ++r) {
      dequantize_weight_row(before, r, want.data());
      ASSERT_TRUE(same_bits(reinterpret_cast<const float*>(after.row(r)), want.data(), want.size()))
          << dtype_name(type) << " row " << r;
    }
  }
}

// ------------------------------------------------------------ end to end

// Logits at positions [from, seq.size()) of one sequence, by one prefill.
std::vector<float> prefill_logits(const Model& model, Backend& backend, const std::vector<int32_t>& seq, int from) {
  const ModelConfig& c = model.config;
  KvCacheShape shape{c.n_layers, c.n_kv_heads, c.head_dim, 16, int(seq.size() + 15) / 16};
  KvCache cache(shape);
  std::vector<int32_t> blocks(size_t(shape.num_blocks)), positions, seq_index, slots;
  for (int i = 0; i < shape.num_blocks; ++i) blocks[size_t(i)] = i;
  for (int p = 0; p < int(seq.size()); ++p) {
    positions.push_back(p);
    seq_index.push_back(0);
    slots.push_back(p);
  }
  ForwardBatch batch;
  batch.tokens = seq.data();
  batch.meta.n_tokens = int(seq.size());
  batch.meta.positions = positions.data();
  batch.meta.seq_index = seq_index.data();
  batch.meta.slot_mapping = slots.data();
  batch.meta.block_tables.emplace_back(blocks);
  for (int p = from; p < int(seq.size()); ++p) batch.logits_rows.push_back(p);
  std::vector<float> logits(size_t(c.vocab_size) * batch.logits_rows.size());
  LlamaForward(model, backend).forward(cache, batch, logits.data());
  return logits;
}

// Of the f32 model's 64 greedy tokens after each golden prompt, how many
// `model` also ranks first when fed the same text (teacher forcing: one
// early disagreement does not decide all the later ones).
int next_token_agreement(const Model& model, Backend& backend, const nlohmann::json& golden) {
  int agree = 0;
  for (const auto& c : golden["cases"]) {
    std::vector<int32_t> seq = c["prompt_ids"].get<std::vector<int32_t>>();
    const auto want = c["greedy_ids"].get<std::vector<int32_t>>();
    const int from = int(seq.size()) - 1;
    seq.insert(seq.end(), want.begin(), want.end() - 1);
    const std::vector<float> logits = prefill_logits(model, backend, seq, from);
    const auto vocab = logits.begin();
    for (size_t j = 0; j < want.size(); ++j) {
      const auto row = vocab + ptrdiff_t(j) * model.config.vocab_size;
      agree += std::max_element(row, row + model.config.vocab_size) - row == want[j];
    }
  }
  return agree;
}

// stories260K's integer variants against the f32 model's golden greedy
// tokens. A 260K-parameter model has small margins between its top logits
// (0.025 and 0.14 at the first token of two golden prompts, where int8
// moves logits by up to 0.4), so free-running generation may part from
// f32 at any token, even the first; the generated prefixes are printed.
// What is asserted is next-token agreement under teacher forcing. Observed
// here (of 256): int8 249, int8-g32 250, int4-g32 196, int4-g64 189,
// int4-g128 197, and for each the same within 2 with only the weights
// quantized (activations in f32), except int8-g32 at 254 (its weights
// alone are that close): the int8 activations cost next to nothing.
TEST(IntVariants, Stories260KAgreesWithTheF32ModelsGreedyTokens) {
  TestModel m = load_stories();
  const auto golden = read_json(data_path("stories260K/golden.json"));
  const int total = 64 * int(golden["cases"].size());
  for (const char* name : {"int8", "int8-g32", "int4-g32", "int4-g64", "int4-g128", "w8a16-g32", "w4a16-g32", "w4a16-g128"}) {
    const Model variant = derive_variant(*m.model, *parse_variant(name));
    Model weights_only = derive_variant(*m.model, *parse_variant(name));
    convert_weights_to_f32(weights_only);
    const int agree = next_token_agreement(variant, *m.backend, golden);
    const int agree_weights_only = next_token_agreement(weights_only, *m.backend, golden);
    const bool w8 = std::string(name).starts_with("int8") || std::string(name).starts_with("w8");
    EXPECT_GE(agree, w8 ? total * 93 / 100 : total * 65 / 100) << name;
    EXPECT_GE(agree, agree_weights_only - total / 50) << name;

    LLMEngine engine(variant, *m.tokenizer, *m.backend, small_engine_config());
    std::vector<Request> requests;
    for (size_t i = 0; i < golden["cases"].size(); ++i) {
      requests.push_back(greedy_request(std::to_string(i), golden["cases"][i]["prompt_ids"].get<std::vector<int32_t>>(), 64));
    }
    const auto outputs = run_all(engine, requests);
    std::string prefixes;
    for (size_t i = 0; i < outputs.size(); ++i) {
      const auto want = golden["cases"][i]["greedy_ids"].get<std::vector<int32_t>>();
      const auto diverge = std::mismatch(want.begin(), want.end(), outputs[i].tokens.begin(), outputs[i].tokens.end());
      prefixes += ' ';
      prefixes += std::to_string(diverge.first - want.begin());
    }
    std::printf("[ info     ] %s: next-token agreement %d/%d (weights only quantized: %d); generation equal to f32 "
                "for the first%s of 64 tokens\n", name, agree, total, agree_weights_only, prefixes.c_str());
  }
}

}  // namespace
}  // namespace tidal::test
