// Pulling the next panel of weight rows into L2 while the current one is
// multiplied (cpu/matmul.cpp sweeps panels; the F32 and integer kernels
// take the bytes to prefetch with the panel). Without it a panel's first
// pass over its rows waits on DRAM; with it those reads overlap the
// previous panel's arithmetic.
#pragma once

#include <algorithm>
#include <cstdint>

namespace tidal::cpu {

// The bytes of the next panel still to prefetch, handed out tile by tile
// in one of two ways. Integer rows are short and take a burst before each
// tile (issue), the bursts spread evenly over the sweep's n_tiles tiles.
// An F32 row is 36 lines at K = 576, and a burst that long measured slower
// than letting the tile prefetch one line per step of its own loop (take).
class PanelPrefetch {
 public:
  static constexpr int64_t kLine = 64;

  PanelPrefetch(const void* begin, int64_t bytes, int64_t n_tiles)
      : next_(static_cast<const char*>(begin)),
        end_(next_ + (begin != nullptr ? bytes : 0)),
        burst_((bytes / std::max<int64_t>(1, n_tiles) / kLine + 1) * kLine) {}

  void issue() {
    for (const char* stop = next_ + std::min<int64_t>(burst_, end_ - next_); next_ < stop; next_ += kLine) {
      __builtin_prefetch(next_, 0, 2);  // read, keep in L2 (prefetcht1)
    }
  }

  // The first of the next `lines` lines for the caller to prefetch; once
  // all are handed out, `idle` (memory already in L1, so prefetching it
  // costs the caller's loop no branch).
  const char* take(int64_t lines, const void* idle) {
    if (next_ >= end_) return static_cast<const char*>(idle);
    const char* p = next_;
    next_ += std::min<int64_t>(lines * kLine, end_ - next_);
    return p;
  }

 private:
  const char* next_;
  const char* end_;
  int64_t burst_;
};

}  // namespace tidal::cpu
