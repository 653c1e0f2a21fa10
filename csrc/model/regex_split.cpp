#include "model/regex_split.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "core/error.h"

namespace tidal {

struct RegexSplitter::Compiled {
  pcre2_code* code = nullptr;
  ~Compiled() { pcre2_code_free(code); }
};

namespace {

std::string pcre2_message(int code) {
  PCRE2_UCHAR buffer[256];
  pcre2_get_error_message(code, buffer, sizeof(buffer));
  return reinterpret_cast<const char*>(buffer);
}

// Appends the pieces of `text` under one pattern to `out`.
void split_one(const pcre2_code* code, pcre2_match_data* match, std::string_view text,
               std::vector<std::string_view>& out) {
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  size_t last = 0;
  size_t offset = 0;
  while (offset < text.size()) {
    const int rc = pcre2_match(code, subject, text.size(), offset, 0, match, nullptr);
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc < 0) throw Error(ErrorCode::kInternal, "pre-tokenizer regex failed: " + pcre2_message(rc));
    const PCRE2_SIZE* range = pcre2_get_ovector_pointer(match);
    const size_t start = range[0];
    const size_t end = range[1];
    if (end == start) {  // an empty match: step over one byte and look again
      offset = start + 1;
      continue;
    }
    if (start > last) out.push_back(text.substr(last, start - last));
    out.push_back(text.substr(start, end - start));
    last = offset = end;
  }
  if (last < text.size()) out.push_back(text.substr(last));
}

// Unicode's White_Space property, which HF tokenizers (Oniguruma) and
// Python's regex use for \s. PCRE2's \s adds U+180E (from Perl's \h list),
// so \s and \S are spelled out instead.
constexpr std::string_view kWhiteSpace =
    "\\t\\n\\x0B\\f\\r \\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}\\x{205F}\\x{3000}";

std::string with_unicode_white_space(const std::string& pattern) {
  std::string out;
  bool in_class = false;
  for (size_t i = 0; i < pattern.size(); ++i) {
    const char c = pattern[i];
    if (c == '\\' && i + 1 < pattern.size()) {
      const char next = pattern[++i];
      if (next == 's') {
        out += in_class ? std::string(kWhiteSpace) : "[" + std::string(kWhiteSpace) + "]";
      } else if (next == 'S' && !in_class) {
        out += "[^" + std::string(kWhiteSpace) + "]";
      } else if (next == 'S') {
        throw Error(ErrorCode::kUnsupported, "\\S inside a character class: " + pattern);
      } else {
        out += c;
        out += next;
      }
      continue;
    }
    if (c == '[' && !in_class) {
      in_class = true;
    } else if (c == ']' && in_class) {
      in_class = false;
    }
    out += c;
  }
  return out;
}

}  // namespace

RegexSplitter::RegexSplitter(const std::vector<std::string>& patterns) {
  for (const std::string& pattern : patterns) {
    const std::string source = with_unicode_white_space(pattern);
    int error = 0;
    PCRE2_SIZE error_offset = 0;
    auto compiled = std::make_unique<Compiled>();
    compiled->code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(source.data()), source.size(),
                                   PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &error, &error_offset, nullptr);
    if (compiled->code == nullptr) {
      throw Error(ErrorCode::kInvalidArgument, "bad pre-tokenizer regex at " + std::to_string(error_offset) + ": " +
                                                   pcre2_message(error));
    }
    // JIT is only a speed-up; the interpreter runs the pattern if it fails.
    pcre2_jit_compile(compiled->code, PCRE2_JIT_COMPLETE);
    patterns_.push_back(std::move(compiled));
  }
}

RegexSplitter::~RegexSplitter() = default;

std::vector<std::string_view> RegexSplitter::split(std::string_view text) const {
  std::vector<std::string_view> pieces{text};
  for (const auto& pattern : patterns_) {
    // Match data is per call so that one splitter serves many threads.
    std::unique_ptr<pcre2_match_data, decltype(&pcre2_match_data_free)> match(
        pcre2_match_data_create_from_pattern(pattern->code, nullptr), &pcre2_match_data_free);
    if (match == nullptr) throw Error(ErrorCode::kResourceExhausted, "out of memory for regex match data");
    std::vector<std::string_view> next;
    for (std::string_view piece : pieces) split_one(pattern->code, match.get(), piece, next);
    pieces = std::move(next);
  }
  return pieces;
}

}  // namespace tidal
