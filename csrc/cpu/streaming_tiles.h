// The order in which the matmul kernels visit row tiles when each weight
// row is read from memory once (a few tokens: decode).
#pragma once

#include <algorithm>
#include <cstdint>

namespace tidal::cpu {

// Regions shorter than this many rows are too short to be worth streaming
// separately.
constexpr int64_t kMinRegionRows = 32;

// Calls tile_fn(first, step, nr) for tiles covering rows [0, n_rows) once
// each, tile rows first, first + step, ... When weights stream from memory
// once, a tile takes its R rows from R far-apart regions of the range, each
// then read front to back as one long run: the hardware prefetcher keeps
// far more of those in flight than R neighbouring rows of a few cache lines
// each (about 7% more bandwidth here). The rest go in plain tiles.
template <int R, typename TileFn>
void for_each_streaming_tile(int64_t n_rows, TileFn&& tile_fn) {
  const int64_t region = n_rows / R >= kMinRegionRows ? n_rows / R : 0;
  for (int64_t j = 0; j < region; ++j) tile_fn(j, region, R);
  for (int64_t r = region * R; r < n_rows; r += R) tile_fn(r, 1, static_cast<int>(std::min<int64_t>(R, n_rows - r)));
}

}  // namespace tidal::cpu
