#include "cpu/fp16_rows.h"

#include "core/dequantize.h"
#include "cpu/simd.h"

namespace tidal::cpu {

#if !defined(TIDAL_CPU_SCALAR)
// Rounding given per instruction rather than taken from MXCSR, so a caller's
// rounding mode never changes what the cache holds.
constexpr int kNearestEven = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;
#endif

void fp32_to_fp16_row(const float* src, uint16_t* dst, int64_t n) {
  int64_t i = 0;
#if defined(TIDAL_CPU_AVX512)
  for (; i + 16 <= n; i += 16) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + i), _mm512_cvtps_ph(_mm512_loadu_ps(src + i), kNearestEven));
  }
  if (i < n) {
    const __mmask16 m = static_cast<__mmask16>((1u << (n - i)) - 1);
    _mm256_mask_storeu_epi16(dst + i, m, _mm512_cvtps_ph(_mm512_maskz_loadu_ps(m, src + i), kNearestEven));
  }
#else
#if defined(TIDAL_CPU_AVX2)
  for (; i + 8 <= n; i += 8) {
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i), _mm256_cvtps_ph(_mm256_loadu_ps(src + i), kNearestEven));
  }
#endif
  for (; i < n; ++i) dst[i] = fp32_to_fp16(src[i]);  // the tail, or every value without F16C
#endif
}

}  // namespace tidal::cpu
