// F32 -> F16 conversion of a run of values, as the KV cache stores them: the
// F16C instructions where the build has them, the scalar reference
// (fp32_to_fp16) elsewhere. Both round to nearest even, so every finite
// value (subnormal results and overflow to infinity included) converts to
// the same bits either way.
#pragma once

#include <cstdint>

namespace tidal::cpu {

void fp32_to_fp16_row(const float* src, uint16_t* dst, int64_t n);

}  // namespace tidal::cpu
