// Pre-tokenizer splitting with PCRE2 (UTF + Unicode properties), applied the
// way HF tokenizers and llama.cpp apply a sequence of split patterns: every
// match becomes a piece, so does every run of text between matches, and each
// later pattern splits the pieces of the earlier ones independently (so a
// lookahead never sees past the end of its piece). \s means Unicode
// White_Space, as in HF tokenizers. Letters and digits follow PCRE2's Unicode
// tables (14.0 in PCRE2 10.42): characters assigned later are not \p{L}/\p{N}
// here, and only text containing them can split differently from HF.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace tidal {

class RegexSplitter {
 public:
  // Throws tidal::Error(kInvalidArgument) when a pattern does not compile.
  explicit RegexSplitter(const std::vector<std::string>& patterns);
  ~RegexSplitter();
  RegexSplitter(const RegexSplitter&) = delete;
  RegexSplitter& operator=(const RegexSplitter&) = delete;

  // Pieces of `text` in order; they point into `text` and cover it exactly.
  // Invalid UTF-8 never matches, so it ends up in the between-match pieces.
  std::vector<std::string_view> split(std::string_view text) const;

 private:
  struct Compiled;
  std::vector<std::unique_ptr<Compiled>> patterns_;
};

}  // namespace tidal
