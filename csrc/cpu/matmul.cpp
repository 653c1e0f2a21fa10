#include "cpu/matmul.h"

#include <algorithm>
#include <functional>

#include "cpu/dequant_rows.h"
#include "cpu/dot_kernels.h"

namespace tidal::cpu {

namespace {

// Threads split rows in whole 16-row tiles and tokens in whole 4-token
// groups, so only the last range has a ragged tile.
constexpr int64_t kRowUnit = 16;
constexpr int64_t kTokenUnit = 4;
// Below this many multiply-adds, waking the other threads costs more than
// it saves.
constexpr int64_t kMinParallelMacs = int64_t(1) << 16;
// Token groups sweep a panel of weight rows sized to stay in L2 (1 MiB per
// core here) next to the activations, so each row comes from memory once.
constexpr int64_t kPanelFloats = 96 * 1024;

int64_t round_up(int64_t n, int64_t m) { return (n + m - 1) / m * m; }

// Rows [r0, r1) for tokens [t0, t1). With a few tokens the weights are
// streamed once, decoded in registers; with more, they are taken a panel at
// a time (F32 in place, other types dequantized into scratch) and every
// token group reuses the panel. Both give the same bits.
void matmul_range(const Weight& w, const float* x, int64_t n_rows_total, int64_t r0, int64_t r1, int64_t t0,
                  int64_t t1, float* y, ScratchBuffer& scratch) {
  const int64_t k = w.cols;
  const float* xt = x + t0 * k;
  float* yt = y + t0 * n_rows_total;
  if (t1 - t0 <= kTokenUnit) {
    dot_block_weights(w, r0, r1 - r0, xt, k, t1 - t0, yt + r0, n_rows_total);
    return;
  }
  const bool in_place = w.type == DType::F32;
  const int64_t stride = in_place ? k : round_up(k, 16);
  const int64_t panel_rows = std::max(kRowUnit, kPanelFloats / stride / kRowUnit * kRowUnit);
  float* buffer = in_place ? nullptr : scratch.get(size_t(std::min(panel_rows, r1 - r0) * stride));
  for (int64_t c0 = r0; c0 < r1; c0 += panel_rows) {
    const int64_t c1 = std::min(r1, c0 + panel_rows);
    const float* panel = reinterpret_cast<const float*>(w.row(c0));
    if (!in_place) {
      dequantize_rows(w, c0, c1 - c0, buffer, stride);
      panel = buffer;
    }
    dot_block(panel, stride, c1 - c0, xt, k, t1 - t0, k, yt + c0, n_rows_total);
  }
}

}  // namespace

void matmul(ThreadPool& pool, std::vector<ScratchBuffer>& scratch, const Weight& w, const float* x, int n_tokens,
            float* y) {
  const int64_t rows = w.rows, n = n_tokens;
  if (rows <= 0 || n <= 0) return;
  if (rows * w.cols * n < kMinParallelMacs || pool.size() == 1) {
    matmul_range(w, x, rows, 0, rows, 0, n, y, scratch[0]);
    return;
  }
  // Rows are the natural split (each thread streams its own weights); the
  // tokens are split instead when there are too few row tiles to go round.
  const int64_t row_units = (rows + kRowUnit - 1) / kRowUnit;
  const bool split_rows = row_units >= 2 * pool.size() || n < kTokenUnit * pool.size();
  auto body = [&](int index, int count) {
    int64_t r0 = 0, r1 = rows, t0 = 0, t1 = n, u0, u1;
    if (split_rows) {
      split_range(row_units, index, count, &u0, &u1);
      r0 = u0 * kRowUnit;
      r1 = std::min(rows, u1 * kRowUnit);
    } else {
      split_range((n + kTokenUnit - 1) / kTokenUnit, index, count, &u0, &u1);
      t0 = u0 * kTokenUnit;
      t1 = std::min(n, u1 * kTokenUnit);
    }
    if (r0 < r1 && t0 < t1) matmul_range(w, x, rows, r0, r1, t0, t1, y, scratch[index]);
  };
  pool.run(std::cref(body));  // cref: the std::function wraps a reference, no copy to the heap
}

}  // namespace tidal::cpu
