#include "cpu/cpu_backend.h"

#include <algorithm>
#include <cstring>
#include <functional>
#include <string>

#include "core/error.h"
#include "core/fwht.h"
#include "cpu/dequant_rows.h"
#include "cpu/fp16_rows.h"
#include "cpu/matmul.h"

namespace tidal {

namespace {

// Elementwise ops below this many floats finish faster than a pool wake-up.
constexpr int64_t kMinParallelFloats = int64_t(1) << 15;

}  // namespace

CpuBackend::CpuBackend(ThreadPool& pool) : pool_(pool), scratch_(size_t(pool.size())) {}

template <typename Fn>
void CpuBackend::for_range(int64_t n, int64_t floats, Fn&& fn) {
  if (floats < kMinParallelFloats) {
    fn(int64_t(0), n);
  } else {
    pool_.parallel_for(n, std::cref(fn));  // cref: no heap copy of the lambda
  }
}

void CpuBackend::matmul(const Weight& w, const float* x, int n_tokens, float* y) {
  cpu::matmul(pool_, scratch_, int8_activations_, w, x, n_tokens, y);
}

void CpuBackend::embed(const Weight& table, const int32_t* ids, int n_tokens, float* out) {
  for (int t = 0; t < n_tokens; ++t) {
    if (ids[t] < 0 || ids[t] >= table.rows) {
      throw Error(ErrorCode::kInvalidArgument,
                  "token id " + std::to_string(ids[t]) + " outside vocabulary of " + std::to_string(table.rows));
    }
    cpu::dequantize_rows(table, ids[t], 1, out + int64_t(t) * table.cols, table.cols);
  }
}

void CpuBackend::rmsnorm(const float* x, const float* gamma, int n_tokens, int dim, float eps, float* out) {
  for_range(n_tokens, int64_t(n_tokens) * dim, [&](int64_t begin, int64_t end) {
    cpu::rmsnorm_rows(x + begin * dim, gamma, end - begin, dim, eps, out + begin * dim);
  });
}

void CpuBackend::rope(float* x, const int32_t* positions, int n_tokens, int n_heads, int head_dim, float theta) {
  if (n_tokens <= 0) return;
  const int32_t max_pos = *std::max_element(positions, positions + n_tokens);
  if (*std::min_element(positions, positions + n_tokens) < 0) {
    throw Error(ErrorCode::kInvalidArgument, "rope: negative position");
  }
  rope_table_.ensure(head_dim, theta, max_pos);
  for_range(n_tokens, int64_t(n_tokens) * n_heads * head_dim, [&](int64_t begin, int64_t end) {
    cpu::rope_rows(x + begin * n_heads * head_dim, positions + begin, end - begin, n_heads, head_dim, rope_table_);
  });
}

void CpuBackend::silu_mul(float* gate, const float* up, int64_t n) {
  for_range(n, n, [&](int64_t begin, int64_t end) { cpu::silu_mul(gate + begin, up + begin, end - begin); });
}

void CpuBackend::add(float* x, const float* y, int64_t n) {
  for_range(n, n, [&](int64_t begin, int64_t end) { cpu::add(x + begin, y + begin, end - begin); });
}

void CpuBackend::hadamard(float* x, int64_t n_rows, int width, int block) {
  if (!is_hadamard_block(block, width)) {
    throw Error(ErrorCode::kInvalidArgument, "hadamard: block " + std::to_string(block) +
                                                 " is not a power of two dividing " + std::to_string(width));
  }
  for_range(n_rows, n_rows * width, [&](int64_t begin, int64_t end) {
    cpu::hadamard_rows(x + begin * width, end - begin, width, block);
  });
}

void CpuBackend::kv_write(KvCache& cache, int layer, const float* k, const float* v, const AttentionMeta& meta) {
  const KvCacheShape& s = cache.shape();
  const size_t row = size_t(s.n_kv_heads) * s.head_dim, bytes = sizeof(float) * s.head_dim;
  const bool f16 = s.dtype == DType::F16;
  for (int t = 0; t < meta.n_tokens; ++t) {
    const int32_t slot = meta.slot_mapping[t];
    if (slot < 0 || slot / s.block_size >= s.num_blocks) {
      throw Error(ErrorCode::kInvalidArgument, "kv_write: slot " + std::to_string(slot) + " outside the cache");
    }
    const int block = slot / s.block_size, offset = (slot % s.block_size) * s.head_dim;
    for (int h = 0; h < s.n_kv_heads; ++h) {
      const float* kh = k + t * row + size_t(h) * s.head_dim;
      const float* vh = v + t * row + size_t(h) * s.head_dim;
      if (f16) {
        cpu::fp32_to_fp16_row(kh, cache.key_f16(layer, block, h) + offset, s.head_dim);
        cpu::fp32_to_fp16_row(vh, cache.value_f16(layer, block, h) + offset, s.head_dim);
      } else {
        std::memcpy(cache.key(layer, block, h) + offset, kh, bytes);
        std::memcpy(cache.value(layer, block, h) + offset, vh, bytes);
      }
    }
  }
}

void CpuBackend::attention(const KvCache& cache, int layer, const float* q, const AttentionMeta& meta, int n_heads,
                           float* out) {
  cpu::attention(pool_, scratch_, attention_workspace_, cache, layer, q, meta, n_heads, out);
}

}  // namespace tidal
