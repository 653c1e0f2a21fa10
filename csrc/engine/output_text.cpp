#include "engine/output_text.h"

#include <algorithm>
#include <utility>

namespace tidal {

OutputText::OutputText(const Tokenizer& tokenizer, StopList stop, int32_t prev_token)
    : tokenizer_(tokenizer), decoder_(tokenizer), stop_(std::move(stop)) {
  decoder_.set_previous(prev_token);
}

std::string OutputText::push(int32_t token) {
  if (stopped()) return {};
  if (tokenizer_.is_special(token)) {
    decoder_.set_previous(token);
    return {};
  }
  held_ += decoder_.push(token);
  return release();
}

std::string OutputText::finish() {
  if (stopped()) return {};
  held_ += decoder_.flush();
  return release() + std::exchange(held_, std::string());
}

std::string OutputText::release() {
  // Earliest complete stop string wins; the text before it is the final text.
  size_t first = std::string::npos;
  for (const std::string& s : stop_) {
    const size_t at = held_.find(s);
    if (at != std::string::npos && (first == std::string::npos || at < first)) {
      first = at;
      matched_ = s;
    }
  }
  if (first != std::string::npos) {
    std::string out = held_.substr(0, first);
    held_.clear();
    return out;
  }
  // Hold back the longest tail that is a proper prefix of some stop string.
  size_t keep = 0;
  for (const std::string& s : stop_) {
    const size_t max_len = std::min(s.size() - 1, held_.size());
    for (size_t len = max_len; len > keep; --len) {
      if (held_.compare(held_.size() - len, len, s, 0, len) == 0) {
        keep = len;
        break;
      }
    }
  }
  std::string out = held_.substr(0, held_.size() - keep);
  held_.erase(0, held_.size() - keep);
  return out;
}

}  // namespace tidal
