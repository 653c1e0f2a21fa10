#include "cpu/matmul.h"

#include <algorithm>
#include <functional>
#include <string>

#include "core/error.h"
#include "cpu/dequant_rows.h"
#include "cpu/dot_kernels.h"
#include "cpu/int_activations.h"
#include "cpu/int_kernels.h"

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
constexpr int64_t kPanelBytes = kPanelFloats * int64_t(sizeof(float));
constexpr int64_t kMinFirstPanelRows = 2 * kRowUnit;
// Below this many activations, quantizing them on one thread beats waking
// the pool for it.
constexpr int64_t kMinParallelQuantize = int64_t(1) << 15;

int64_t round_up(int64_t n, int64_t m) { return (n + m - 1) / m * m; }

// Rows of a thread's first panel for n_tokens: small, because nothing hides
// its DRAM reads, but not below n_tokens rows. Every panel re-reads all the
// activations, and a row of weights is as large as a token's activations
// in the same format (the F32 panel against F32 tokens, int8 codes against
// int8 tokens), so a panel of fewer rows than tokens would move more
// activation bytes than weight bytes: prefill starts at full size.
int64_t first_panel_rows(int64_t n_tokens, int64_t max_rows) {
  return std::min(max_rows, std::max(kMinFirstPanelRows, round_up(n_tokens, kRowUnit)));
}

// Rows in a panel of `row_bytes`-byte rows: whole row tiles, at least one.
int64_t panel_rows(int64_t row_bytes) { return std::max(kRowUnit, kPanelBytes / row_bytes / kRowUnit * kRowUnit); }

// Calls panel(c0, c1, next_rows) for the panels covering rows [r0, r1):
// each panel's tiles prefetch the next panel's stored rows (next_rows of
// them, 0 after the last), so its DRAM reads overlap this one's
// arithmetic. Only the first panel has nothing to hide its reads behind; it
// is small (first_panel_rows), and the panels double from there (a panel's
// tiles can prefetch about one row each: for a batch of 32, two panels'
// worth) up to max_rows, the size that stays in L2.
template <typename Panel>
void for_each_panel(int64_t r0, int64_t r1, int64_t n_tokens, int64_t max_rows, Panel&& panel) {
  int64_t rows = first_panel_rows(n_tokens, max_rows);
  for (int64_t c0 = r0; c0 < r1;) {
    const int64_t c1 = std::min(r1, c0 + rows);
    rows = std::min(max_rows, 2 * rows);
    panel(c0, c1, std::min(r1, c1 + rows) - c1);
    c0 = c1;
  }
}

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
  const int64_t max_rows = panel_rows(stride * int64_t(sizeof(float)));
  float* buffer = in_place ? nullptr : scratch.get(size_t(std::min(max_rows, r1 - r0) * stride));
  for_each_panel(r0, r1, t1 - t0, max_rows, [&](int64_t c0, int64_t c1, int64_t next_rows) {
    const float* panel = reinterpret_cast<const float*>(w.row(c0));
    if (!in_place) {
      dequantize_rows(w, c0, c1 - c0, buffer, stride);
      panel = buffer;
    }
    dot_block(panel, stride, c1 - c0, xt, k, t1 - t0, k, yt + c0, n_rows_total, w.row(c1),
              next_rows * int64_t(w.row_bytes()));
  });
}

// The same for integer weights, which the kernels read in place: a few
// tokens stream every row once, more sweep cache-sized panels of rows.
void int_matmul_range(const Weight& w, const QuantizedActivations& xq, int64_t n_rows_total, int64_t r0, int64_t r1,
                      int64_t t0, int64_t t1, float* y) {
  const IntDotRows dot_rows = int_dot_rows_for(w.type);
  float* yt = y + t0 * n_rows_total;
  if (t1 - t0 <= kTokenUnit) {
    dot_rows(w, r0, r1 - r0, xq, t0, t1 - t0, yt + r0, n_rows_total, RowOrder::kStream);
    return;
  }
  for_each_panel(r0, r1, t1 - t0, panel_rows(int64_t(w.row_bytes())), [&](int64_t c0, int64_t c1, int64_t next_rows) {
    dot_rows(w, c0, c1 - c0, xq, t0, t1 - t0, yt + c0, n_rows_total,
             {RowOrder::kPanel, w.row(c1), next_rows * int64_t(w.row_bytes())});
  });
}

// Calls range(r0, r1, t0, t1, thread) over a split of rows x tokens: on the
// calling thread alone when the product is small, else one range per pool
// thread. Rows are the natural split (each thread streams its own
// weights); the tokens are split instead when there are too few row tiles
// to go round.
template <typename Range>
void for_each_range(ThreadPool& pool, int64_t rows, int64_t cols, int64_t n, Range&& range) {
  if (rows * cols * n < kMinParallelMacs || pool.size() == 1) {
    range(int64_t(0), rows, int64_t(0), n, 0);
    return;
  }
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
    if (r0 < r1 && t0 < t1) range(r0, r1, t0, t1, index);
  };
  pool.run(std::cref(body));  // cref: the std::function wraps a reference, no copy to the heap
}

// Quantizes every token once (in parallel when there are many), then runs
// the integer kernels over the same split as the float path.
void int_matmul(ThreadPool& pool, ScratchBuffer& int8_x, const Weight& w, const float* x, int64_t n, float* y) {
  if (dtype_padded_cols(w.type, w.cols) > kMaxIntCols) {
    throw Error(ErrorCode::kUnsupported, std::string(dtype_name(w.type)) + " matmul: rows of " +
                                             std::to_string(w.cols) + " columns exceed the integer kernels' limit of " +
                                             std::to_string(kMaxIntCols));
  }
  QuantizedActivations xq;
  xq.layout = activation_layout(w.type, w.cols);
  auto* buffer = reinterpret_cast<uint8_t*>(int8_x.get((size_t(n) * xq.layout.stride + 3) / sizeof(float)));
  xq.data = buffer;
  if (n * w.cols < kMinParallelQuantize || pool.size() == 1) {
    quantize_activations(w.type, xq.layout, x, w.cols, 0, n, buffer);
  } else {
    auto quantize = [&](int64_t t0, int64_t t1) { quantize_activations(w.type, xq.layout, x, w.cols, t0, t1, buffer); };
    pool.parallel_for(n, std::cref(quantize));
  }
  for_each_range(pool, w.rows, w.cols, n, [&](int64_t r0, int64_t r1, int64_t t0, int64_t t1, int) {
    int_matmul_range(w, xq, w.rows, r0, r1, t0, t1, y);
  });
}

}  // namespace

void matmul(ThreadPool& pool, std::vector<ScratchBuffer>& scratch, ScratchBuffer& int8_x, const Weight& w,
            const float* x, int n_tokens, float* y) {
  const int64_t rows = w.rows, n = n_tokens;
  if (rows <= 0 || n <= 0) return;
  if (dtype_is_int(w.type)) {
    int_matmul(pool, int8_x, w, x, n, y);
    return;
  }
  for_each_range(pool, rows, w.cols, n, [&](int64_t r0, int64_t r1, int64_t t0, int64_t t1, int index) {
    matmul_range(w, x, rows, r0, r1, t0, t1, y, scratch[size_t(index)]);
  });
}

}  // namespace tidal::cpu
