// The scalar reference conversions: exact special cases, exhaustive half and
// bfloat16 round trips, and the quantizers' error bounds.
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "core/dequantize.h"
#include "core/error.h"

namespace tidal {
namespace {

float from_bits(uint32_t b) { return std::bit_cast<float>(b); }

TEST(Fp16, KnownValues) {
  EXPECT_EQ(fp16_to_fp32(0x3c00), 1.0f);
  EXPECT_EQ(fp16_to_fp32(0xc000), -2.0f);
  EXPECT_EQ(fp16_to_fp32(0x7bff), 65504.0f);
  EXPECT_EQ(fp16_to_fp32(0x0400), std::ldexp(1.0f, -14));        // smallest normal
  EXPECT_EQ(fp16_to_fp32(0x0001), std::ldexp(1.0f, -24));        // smallest subnormal
  EXPECT_EQ(fp16_to_fp32(0x03ff), std::ldexp(1023.0f, -24));     // largest subnormal
  EXPECT_EQ(std::bit_cast<uint32_t>(fp16_to_fp32(0x8000)), 0x80000000u);  // -0
  EXPECT_EQ(fp16_to_fp32(0x7c00), std::numeric_limits<float>::infinity());
  EXPECT_EQ(fp16_to_fp32(0xfc00), -std::numeric_limits<float>::infinity());
  EXPECT_TRUE(std::isnan(fp16_to_fp32(0x7e00)));
  EXPECT_TRUE(std::isnan(fp16_to_fp32(0x7c01)));  // signalling NaN stays NaN

  EXPECT_EQ(fp32_to_fp16(1.0f), 0x3c00);
  EXPECT_EQ(fp32_to_fp16(-0.0f), 0x8000);
  EXPECT_EQ(fp32_to_fp16(65504.0f), 0x7bff);
  EXPECT_EQ(fp32_to_fp16(std::numeric_limits<float>::infinity()), 0x7c00);
  EXPECT_EQ(fp32_to_fp16(-1e10f), 0xfc00);
  EXPECT_EQ(fp32_to_fp16(1e-10f), 0x0000);
  EXPECT_EQ(fp32_to_fp16(std::ldexp(1.0f, -24)), 0x0001);
  const uint16_t nan = fp32_to_fp16(std::numeric_limits<float>::quiet_NaN());
  EXPECT_EQ(nan & 0x7c00, 0x7c00);
  EXPECT_NE(nan & 0x03ff, 0);
  EXPECT_NE(fp32_to_fp16(from_bits(0x7f800001u)) & 0x03ff, 0);  // tiny-payload NaN does not become inf
}

TEST(Fp16, RoundsToNearestEven) {
  EXPECT_EQ(fp32_to_fp16(1.0f + std::ldexp(1.0f, -11)), 0x3c00);      // tie, down to even
  EXPECT_EQ(fp32_to_fp16(1.0f + 3 * std::ldexp(1.0f, -11)), 0x3c02);  // tie, up to even
  EXPECT_EQ(fp32_to_fp16(65519.0f), 0x7bff);
  EXPECT_EQ(fp32_to_fp16(65520.0f), 0x7c00);  // tie between 65504 and 2^16: rounds to inf
  EXPECT_EQ(fp32_to_fp16(std::ldexp(1.0f, -25)), 0x0000);             // subnormal tie, to even (0)
  EXPECT_EQ(fp32_to_fp16(std::ldexp(3.0f, -25)), 0x0002);             // subnormal tie, to even (2)
  EXPECT_EQ(fp32_to_fp16(std::ldexp(1.5f, -25)), 0x0001);
}

TEST(Fp16, ExhaustiveRoundTrip) {
  for (uint32_t h = 0; h <= 0xffff; ++h) {
    const float f = fp16_to_fp32(static_cast<uint16_t>(h));
    if (std::isnan(f)) {
      EXPECT_TRUE(std::isnan(fp16_to_fp32(fp32_to_fp16(f)))) << h;
    } else {
      ASSERT_EQ(fp32_to_fp16(f), h) << h;
    }
  }
}

// For random finite floats, no other half is nearer than the one chosen.
TEST(Fp16, PicksNearestHalf) {
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> exponent(-26.0f, 16.0f);
  for (int i = 0; i < 100000; ++i) {
    const float f = std::ldexp(1.0f, static_cast<int>(exponent(rng))) * (1.0f + static_cast<float>(rng() % 4096) / 4096.0f);
    const uint16_t h = fp32_to_fp16(f);
    if ((h & 0x7fff) == 0x7c00) {
      ASSERT_GE(f, 65520.0f);
      continue;
    }
    const double err = std::fabs(static_cast<double>(f) - fp16_to_fp32(h));
    for (int step : {-1, 1}) {
      const uint16_t other = static_cast<uint16_t>(h + step);
      if ((other & 0x7c00) == 0x7c00 || (h == 0 && step < 0)) continue;
      ASSERT_LE(err, std::fabs(static_cast<double>(f) - fp16_to_fp32(other))) << f;
    }
  }
}

TEST(Bf16, KnownValuesAndRounding) {
  EXPECT_EQ(fp32_to_bf16(1.0f), 0x3f80);
  EXPECT_EQ(bf16_to_fp32(0xc040), -3.0f);
  EXPECT_EQ(fp32_to_bf16(from_bits(0x3f808000u)), 0x3f80);  // tie, down to even
  EXPECT_EQ(fp32_to_bf16(from_bits(0x3f818000u)), 0x3f82);  // tie, up to even
  EXPECT_EQ(fp32_to_bf16(from_bits(0x3f808001u)), 0x3f81);
  EXPECT_EQ(fp32_to_bf16(std::numeric_limits<float>::infinity()), 0x7f80);
  EXPECT_EQ(fp32_to_bf16(std::numeric_limits<float>::max()), 0x7f80);  // rounds up to inf
  EXPECT_TRUE(std::isnan(bf16_to_fp32(fp32_to_bf16(from_bits(0x7f800001u)))));
  EXPECT_TRUE(std::isnan(bf16_to_fp32(fp32_to_bf16(-std::numeric_limits<float>::quiet_NaN()))));
}

TEST(Bf16, ExhaustiveRoundTrip) {
  for (uint32_t b = 0; b <= 0xffff; ++b) {
    const float f = bf16_to_fp32(static_cast<uint16_t>(b));
    if (std::isnan(f)) continue;
    ASSERT_EQ(fp32_to_bf16(f), b) << b;
  }
}

std::vector<uint8_t> quantize(DType t, const std::vector<float>& x) {
  std::vector<uint8_t> q(dtype_row_bytes(t, static_cast<int64_t>(x.size())));
  quantize_row(t, x.data(), q.data(), static_cast<int64_t>(x.size()));
  return q;
}

std::vector<float> dequantize(DType t, const std::vector<uint8_t>& q, size_t n) {
  std::vector<float> x(n);
  dequantize_row(t, q.data(), x.data(), static_cast<int64_t>(n));
  return x;
}

float block_scale(const uint8_t* block, int offset = 0) {
  uint16_t h;
  std::memcpy(&h, block + offset, 2);
  return fp16_to_fp32(h);
}

TEST(Dequantize, KnownQ8_0Block) {
  std::vector<uint8_t> block(34);
  const uint16_t half = 0x3800;  // 0.5
  std::memcpy(block.data(), &half, 2);
  for (int j = 0; j < 32; ++j) block[2 + j] = static_cast<uint8_t>(static_cast<int8_t>(j * 8 - 128));
  const std::vector<float> x = dequantize(DType::Q8_0, block, 32);
  for (int j = 0; j < 32; ++j) EXPECT_EQ(x[j], 0.5f * static_cast<float>(j * 8 - 128));
}

TEST(Dequantize, KnownQ4_0Block) {
  std::vector<uint8_t> block(18);
  const uint16_t two = 0x4000;
  std::memcpy(block.data(), &two, 2);
  for (int j = 0; j < 16; ++j) block[2 + j] = static_cast<uint8_t>(j | ((15 - j) << 4));
  const std::vector<float> x = dequantize(DType::Q4_0, block, 32);
  for (int j = 0; j < 16; ++j) {
    EXPECT_EQ(x[j], 2.0f * static_cast<float>(j - 8));
    EXPECT_EQ(x[j + 16], 2.0f * static_cast<float>(7 - j));
  }
}

TEST(Dequantize, KnownQ4_1Block) {
  std::vector<uint8_t> block(20);
  const uint16_t half = 0x3800, minus_one = 0xbc00;
  std::memcpy(block.data(), &half, 2);
  std::memcpy(block.data() + 2, &minus_one, 2);
  for (int j = 0; j < 16; ++j) block[4 + j] = static_cast<uint8_t>(j | ((15 - j) << 4));
  const std::vector<float> x = dequantize(DType::Q4_1, block, 32);
  for (int j = 0; j < 16; ++j) {
    EXPECT_EQ(x[j], 0.5f * static_cast<float>(j) - 1.0f);
    EXPECT_EQ(x[j + 16], 0.5f * static_cast<float>(15 - j) - 1.0f);
  }
}

// Values already on the quantization grid come back exactly.
TEST(Quantize, ExactOnGrid) {
  std::vector<float> q8(32), q40(32), q41(32);
  for (int j = 0; j < 32; ++j) {
    q8[j] = static_cast<float>((j * 37) % 255 - 127);
    q40[j] = static_cast<float>(j % 16 - 8);
    q41[j] = static_cast<float>(j % 16 + 3);
  }
  q8[5] = 127.0f;  // scale exactly 1
  EXPECT_EQ(dequantize(DType::Q8_0, quantize(DType::Q8_0, q8), 32), q8);
  EXPECT_EQ(dequantize(DType::Q4_0, quantize(DType::Q4_0, q40), 32), q40);
  EXPECT_EQ(dequantize(DType::Q4_1, quantize(DType::Q4_1, q41), 32), q41);

  const std::vector<uint8_t> b = quantize(DType::Q4_0, q40);
  EXPECT_EQ(block_scale(b.data()), 1.0f);  // d = max / -8 with max = -8
  EXPECT_EQ(b[2], 0x00);                   // x[0] = x[16] = -8 -> code 0 in both nibbles
  EXPECT_EQ(b[3], 0x11);                   // x[1] = x[17] = -7 -> code 1
}

TEST(Quantize, ZeroBlocks) {
  const std::vector<float> zeros(64, 0.0f);
  for (DType t : {DType::Q8_0, DType::Q4_0, DType::Q4_1, DType::F16, DType::BF16}) {
    EXPECT_EQ(dequantize(t, quantize(t, zeros), 64), zeros) << dtype_name(t);
  }
}

// |x - dequantized| is at most half a step of the scale actually used, plus
// what rounding the scale (and min) to fp16 moves the grid.
TEST(Quantize, ErrorBounds) {
  std::mt19937 rng(42);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  const int n = 32 * 256;
  std::vector<float> x(n);
  for (int i = 0; i < n; ++i) x[i] = normal(rng) * (i % 64 < 32 ? 0.02f : 3.0f);

  for (DType t : {DType::Q8_0, DType::Q4_0, DType::Q4_1}) {
    const std::vector<uint8_t> q = quantize(t, x);
    const std::vector<float> y = dequantize(t, q, n);
    for (int b = 0; b < n / 32; ++b) {
      const float* xb = &x[b * 32];
      const uint8_t* qb = q.data() + b * dtype_block_bytes(t);
      float amax = 0, max = 0, lo = xb[0], hi = xb[0];
      for (int j = 0; j < 32; ++j) {
        if (std::fabs(xb[j]) > amax) {
          amax = std::fabs(xb[j]);
          max = xb[j];
        }
        lo = std::min(lo, xb[j]);
        hi = std::max(hi, xb[j]);
      }
      const float tiny = 1e-6f * amax;
      for (int j = 0; j < 32; ++j) {
        const float err = std::fabs(xb[j] - y[b * 32 + j]);
        if (t == DType::Q8_0) {
          const float d = amax / 127.0f, d16 = block_scale(qb);
          ASSERT_LE(err, d / 2 + 127 * std::fabs(d - d16) + tiny);
        } else if (t == DType::Q4_0) {
          const float d = max / -8.0f, d16 = block_scale(qb);
          // Codes clamp at 15 (+7 steps), so x/d in [7.5, 8] may be a whole step off.
          const float steps = xb[j] / d >= 7.5f ? 1.0f : 0.5f;
          ASSERT_LE(err, steps * std::fabs(d) + 8 * std::fabs(d - d16) + tiny);
        } else {
          const float d = (hi - lo) / 15.0f, d16 = block_scale(qb), m16 = block_scale(qb, 2);
          ASSERT_LE(err, d / 2 + 15 * std::fabs(d - d16) + std::fabs(lo - m16) + tiny);
        }
      }
    }
  }
}

TEST(Quantize, HalfAndBfloatMatchScalarConversions) {
  const std::vector<float> x = {0.0f, -1.5f, 3.14159f, 1e-6f, 70000.0f, -2.5e-3f};
  const std::vector<uint8_t> h = quantize(DType::F16, x), b = quantize(DType::BF16, x);
  const std::vector<float> hx = dequantize(DType::F16, h, x.size()), bx = dequantize(DType::BF16, b, x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    EXPECT_EQ(hx[i], fp16_to_fp32(fp32_to_fp16(x[i])));
    EXPECT_EQ(bx[i], bf16_to_fp32(fp32_to_bf16(x[i])));
  }
}

TEST(Quantize, RejectsPartialBlocks) {
  std::vector<float> x(40);
  std::vector<uint8_t> q(64);
  try {
    quantize_row(DType::Q4_0, x.data(), q.data(), 40);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
  }
  EXPECT_THROW(dequantize_row(DType::Q8_0, q.data(), x.data(), 33), Error);
}

// The integer formats' scales live beside the matrix, out of reach of a
// row's bytes: the row functions refuse them and name the function that can.
TEST(Quantize, IntegerFormatsNeedTheirScales) {
  std::vector<float> x(64);
  std::vector<uint8_t> q(64);
  for (DType type : {DType::I8, DType::I8_G32, DType::I4_G32, DType::I4_G64, DType::I4_G128}) {
    for (bool decode : {true, false}) {
      try {
        if (decode) {
          dequantize_row(type, q.data(), x.data(), 64);
        } else {
          quantize_row(type, x.data(), q.data(), 64);
        }
        FAIL() << dtype_name(type) << " accepted";
      } catch (const Error& e) {
        EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
        EXPECT_NE(std::string(e.what()).find("dequantize_weight_row"), std::string::npos) << e.what();
      }
    }
  }
}

}  // namespace
}  // namespace tidal
