#include "cli/kv_cache_report.h"

namespace tidal {

std::string kv_cache_report(const EngineStats& s) {
  const size_t elements_per_token = s.kv_bytes_per_token / dtype_block_bytes(s.kv_cache_dtype);
  return "KV cache: " + std::string(dtype_name(s.kv_cache_dtype)) + ", " + std::to_string(s.kv_bytes_per_token) +
         " bytes/token (f32: " + std::to_string(elements_per_token * sizeof(float)) + "), " +
         std::to_string(s.num_blocks) + " blocks x " + std::to_string(s.block_size) + " = " +
         std::to_string(int64_t(s.num_blocks) * s.block_size) + " tokens";
}

}  // namespace tidal
