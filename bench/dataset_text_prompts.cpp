#include <algorithm>

#include "dataset.h"

namespace tidal::bench {

void to_text_prompts(std::vector<SampleRequest>& samples, const TextCodec& codec, int vocab_size,
                     std::mt19937_64& rng) {
  // Only random and burstgpt prompts are ids, and those need vocab_size > 0.
  std::uniform_int_distribution<int32_t> any_token(0, std::max(vocab_size, 1) - 1);
  for (SampleRequest& s : samples) {
    if (s.prompt_ids.empty()) continue;
    const size_t target = s.prompt_ids.size();
    std::vector<int32_t> ids = std::move(s.prompt_ids);
    std::string text;
    for (int tries_left = 10;; --tries_left) {
      text = codec.decode(ids);
      ids = codec.encode(text);
      if (tries_left <= 0 || ids.size() == target) break;
      if (ids.size() < target)
        while (ids.size() < target) ids.push_back(any_token(rng));
      else
        ids.resize(target);
    }
    s.prompt_ids.clear();
    s.prompt_text = std::move(text);
    s.prompt_len = static_cast<int>(ids.size());
  }
}

}  // namespace tidal::bench
