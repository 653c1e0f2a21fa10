// Splits text around the literal strings of special tokens, so that e.g.
// "<|im_start|>" in a rendered chat prompt becomes its single id instead of
// being tokenized as ordinary characters.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace tidal {

struct TextFragment {
  std::string_view text;  // raw text to tokenize normally when id < 0
  int32_t id = -1;        // the special token's id otherwise
};

class SpecialTokenMatcher {
 public:
  // `always`: matched even when the caller did not ask to parse special
  // tokens (user-defined tokens, as llama.cpp and HF tokenizers treat them);
  // otherwise (control tokens) only when it did.
  void add(std::string text, int32_t id, bool always);

  // Scans left to right, taking the longest token that starts at each
  // position. Fragments point into `text`.
  std::vector<TextFragment> split(std::string_view text, bool parse_special) const;

 private:
  struct Entry {
    std::string text;
    int32_t id;
    bool always;
  };
  std::vector<Entry> entries_;
  // Entry indices by first byte, longest first.
  std::array<std::vector<uint32_t>, 256> by_first_byte_;
};

}  // namespace tidal
