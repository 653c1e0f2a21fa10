#include "model/special_tokens.h"

#include <algorithm>

namespace tidal {

void SpecialTokenMatcher::add(std::string text, int32_t id, bool always) {
  if (text.empty()) return;
  auto& bucket = by_first_byte_[static_cast<uint8_t>(text[0])];
  const size_t size = text.size();
  entries_.push_back({std::move(text), id, always});
  // Keep the bucket longest first: insert after every entry at least as long.
  auto at = std::partition_point(bucket.begin(), bucket.end(),
                                 [&](uint32_t index) { return entries_[index].text.size() >= size; });
  bucket.insert(at, static_cast<uint32_t>(entries_.size() - 1));
}

std::vector<TextFragment> SpecialTokenMatcher::split(std::string_view text, bool parse_special) const {
  std::vector<TextFragment> out;
  size_t raw_start = 0;
  size_t pos = 0;
  while (pos < text.size()) {
    const Entry* hit = nullptr;
    for (uint32_t index : by_first_byte_[static_cast<uint8_t>(text[pos])]) {
      const Entry& e = entries_[index];
      if ((e.always || parse_special) && text.substr(pos).starts_with(e.text)) {
        hit = &e;
        break;
      }
    }
    if (hit == nullptr) {
      ++pos;
      continue;
    }
    if (pos > raw_start) out.push_back({text.substr(raw_start, pos - raw_start), -1});
    out.push_back({text.substr(pos, hit->text.size()), hit->id});
    pos += hit->text.size();
    raw_start = pos;
  }
  if (pos > raw_start) out.push_back({text.substr(raw_start, pos - raw_start), -1});
  return out;
}

}  // namespace tidal
