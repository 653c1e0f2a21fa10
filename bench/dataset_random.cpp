#include <cmath>
#include <stdexcept>

#include "dataset.h"

namespace tidal::bench {

std::vector<SampleRequest> random_dataset(size_t n, const RandomDatasetOptions& o, std::mt19937_64& rng) {
  if (o.vocab_size <= 0) throw std::invalid_argument("the random dataset needs --random-vocab-size");
  if (o.range_ratio < 0 || o.range_ratio >= 1) throw std::invalid_argument("--random-range-ratio must be in [0, 1)");
  if (o.input_len < 1 || o.output_len < 1) throw std::invalid_argument("random input and output lengths must be >= 1");
  auto bounds = [&](int len) {
    const int lo = std::max(1, static_cast<int>(std::floor(len * (1 - o.range_ratio))));
    const int hi = static_cast<int>(std::ceil(len * (1 + o.range_ratio)));
    return std::uniform_int_distribution<int>(lo, hi);
  };
  auto input_dist = bounds(o.input_len);
  auto output_dist = bounds(o.output_len);
  std::uniform_int_distribution<int64_t> offset_dist(0, o.vocab_size - 1);

  std::vector<SampleRequest> out(n);
  for (size_t i = 0; i < n; ++i) {
    SampleRequest& s = out[i];
    s.prompt_len = input_dist(rng);
    s.output_len = output_dist(rng);
    const int64_t offset = offset_dist(rng);
    s.prompt_ids.resize(s.prompt_len);
    for (int j = 0; j < s.prompt_len; ++j)
      s.prompt_ids[j] = static_cast<int32_t>((offset + static_cast<int64_t>(i) + j) % o.vocab_size);
  }
  return out;
}

}  // namespace tidal::bench
