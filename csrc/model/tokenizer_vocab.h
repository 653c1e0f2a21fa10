// A tokenizer vocabulary as GGUF stores it (and as we rebuild it from
// llama2.c tokenizer files), plus the factories of the tokenizers built from
// one. Internal to the tokenizer implementation; callers use tokenizer.h.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "model/tokenizer.h"

namespace tidal {

// GGUF `tokenizer.ggml.token_type` values (llama.cpp's llama_token_type).
enum class TokenType : int32_t {
  kUndefined = 0,
  kNormal = 1,
  kUnknown = 2,
  kControl = 3,      // <s>, <|im_end|>: never printed, parsed only on request
  kUserDefined = 4,  // always matched as a whole string, printed verbatim
  kUnused = 5,
  kByte = 6,         // <0xAB> byte-fallback pieces
};

struct Vocabulary {
  std::vector<std::string> pieces;
  std::vector<TokenType> types;     // same length as pieces
  std::vector<float> scores;        // SPM: same length as pieces
  std::vector<std::string> merges;  // BPE: "left right", rank = index
  std::string pre;                  // BPE: pre-tokenizer name (tokenizer.ggml.pre)
  int32_t bos = -1;
  int32_t eos = -1;
  int32_t unk = -1;                 // SPM: for characters with no piece and no byte token
  bool add_bos = false;
  bool add_space_prefix = false;    // SPM: prefix text with U+2581
  std::vector<int32_t> extra_stop_ids;
};

// Hash map keyed by string that can be probed with a string_view without
// building a std::string (the merge loops look up many substrings).
struct StringViewHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
template <typename T>
using StringMap = std::unordered_map<std::string, T, StringViewHash, std::equal_to<>>;

// SentencePiece text of an ordinary piece: U+2581 becomes a space, and the
// first space is dropped right after BOS (it is the dummy prefix that
// encoding added, not part of the text) - llama2.c's rule.
std::string spm_piece_text(std::string_view piece, bool after_bos);
// Text with spaces written as U+2581, as SPM pieces spell them.
std::string spm_escape_spaces(std::string_view text);
// The byte a "<0xAB>" byte-fallback piece stands for, or -1 for other pieces.
int parse_byte_piece(std::string_view piece);
// What SentencePiece prints for the unknown token.
inline constexpr std::string_view kSpmUnknownText = " \xE2\x81\x87 ";  // " ⁇ "

// SentencePiece-style merges by piece score (llama.cpp's llm_tokenizer_spm).
// Pieces use U+2581 for spaces.
std::unique_ptr<Tokenizer> make_spm_vocab_tokenizer(Vocabulary vocab);

// Byte-level BPE with ranked merges and a regex pre-tokenizer.
std::unique_ptr<Tokenizer> make_bpe_tokenizer(Vocabulary vocab);

}  // namespace tidal
