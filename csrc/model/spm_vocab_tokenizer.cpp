// SPM-style tokenizer over a vocabulary of scored pieces: the algorithm of
// llama.cpp's llm_tokenizer_spm (and llama2.c's encode). Text has spaces
// turned into U+2581, is split into UTF-8 characters, and the adjacent pair
// whose concatenation is a piece with the highest score is merged until no
// pair is a piece; characters left without a piece become byte tokens.
#include <algorithm>
#include <array>
#include <queue>

#include "core/error.h"
#include "model/special_tokens.h"
#include "model/tokenizer_vocab.h"
#include "model/utf8.h"

namespace tidal {

namespace {

constexpr std::string_view kSpaceMark = "\xE2\x96\x81";  // U+2581

class SpmVocabTokenizer final : public Tokenizer {
 public:
  explicit SpmVocabTokenizer(Vocabulary vocab) : v_(std::move(vocab)) {
    byte_ids_.fill(-1);
    byte_values_.assign(v_.pieces.size(), -1);
    for (size_t id = 0; id < v_.pieces.size(); ++id) {
      const std::string& piece = v_.pieces[id];
      const auto i = static_cast<int32_t>(id);
      switch (v_.types[id]) {
        case TokenType::kByte: {
          const int value = parse_byte_piece(piece);
          if (value < 0) {
            throw Error(ErrorCode::kCorrupt, "byte token " + std::to_string(id) + " is not <0xXX>: " + piece);
          }
          byte_ids_[value] = i;
          byte_values_[id] = static_cast<int16_t>(value);
          break;
        }
        case TokenType::kControl:
          specials_.add(piece, i, /*always=*/false);
          break;
        case TokenType::kUserDefined:
          specials_.add(piece, i, /*always=*/true);
          break;
        case TokenType::kUndefined:
        case TokenType::kNormal:
          // Only ordinary pieces may be produced by merging text, as in
          // SentencePiece: "<s>" typed by a user must not become BOS.
          piece_ids_.emplace(piece, i);
          break;
        case TokenType::kUnknown:
        case TokenType::kUnused:
          break;
      }
    }
  }

  std::vector<int32_t> encode(std::string_view text, bool add_bos, bool parse_special) const override {
    std::vector<int32_t> out;
    if (add_bos && v_.bos >= 0) out.push_back(v_.bos);
    // Like llama.cpp, every run of text that starts the input or follows a
    // special token gets the dummy space prefix.
    bool after_special = true;
    for (const TextFragment& fragment : specials_.split(text, parse_special)) {
      if (fragment.id >= 0) {
        out.push_back(fragment.id);
        after_special = true;
        continue;
      }
      std::string escaped = (v_.add_space_prefix && after_special) ? std::string(kSpaceMark) : std::string();
      escaped += spm_escape_spaces(fragment.text);
      tokenize_run(escaped, out);
      after_special = false;
    }
    return out;
  }

  std::string token_bytes(int32_t id, int32_t prev) const override {
    check_id(id);
    switch (v_.types[id]) {
      case TokenType::kByte:
        return std::string(1, static_cast<char>(byte_values_[id]));
      case TokenType::kUnknown:
        return std::string(kSpmUnknownText);
      case TokenType::kControl:
        return v_.pieces[id];
      default:
        break;
    }
    return spm_piece_text(v_.pieces[id], prev >= 0 && prev == v_.bos);
  }

  int vocab_size() const override { return static_cast<int>(v_.pieces.size()); }
  int32_t bos_id() const override { return v_.bos; }
  int32_t eos_id() const override { return v_.eos; }
  bool add_bos_by_default() const override { return v_.add_bos; }
  bool is_special(int32_t id) const override { return id >= 0 && id < vocab_size() && v_.types[id] == TokenType::kControl; }
  std::vector<int32_t> extra_stop_ids() const override { return v_.extra_stop_ids; }
  std::string id_to_piece(int32_t id) const override {
    check_id(id);
    return v_.pieces[id];
  }

 private:
  struct Symbol {
    size_t offset;
    size_t size;  // 0 once merged into its left neighbour
    int prev;
    int next;
  };
  struct Bigram {
    float score;
    int left;
    int right;
    size_t size;  // bytes of the merged text; detects stale queue entries
  };
  struct BigramOrder {
    // Highest score first; among equal scores the leftmost pair.
    bool operator()(const Bigram& a, const Bigram& b) const {
      return a.score < b.score || (a.score == b.score && a.left > b.left);
    }
  };

  void check_id(int32_t id) const {
    if (id < 0 || id >= vocab_size()) throw Error(ErrorCode::kInvalidArgument, "token id out of range: " + std::to_string(id));
  }

  int32_t find_piece(std::string_view text) const {
    auto it = piece_ids_.find(text);
    return it == piece_ids_.end() ? -1 : it->second;
  }

  bool has_all_bytes(std::string_view text) const {
    return std::all_of(text.begin(), text.end(), [this](char c) { return byte_ids_[static_cast<uint8_t>(c)] >= 0; });
  }

  void tokenize_run(const std::string& text, std::vector<int32_t>& out) const {
    std::vector<Symbol> symbols;
    for (size_t offset = 0; offset < text.size();) {
      const size_t size = std::min(utf8_char_length(static_cast<uint8_t>(text[offset])), text.size() - offset);
      const int index = static_cast<int>(symbols.size());
      symbols.push_back({offset, size, index - 1, offset + size == text.size() ? -1 : index + 1});
      offset += size;
    }
    std::priority_queue<Bigram, std::vector<Bigram>, BigramOrder> queue;
    auto try_add = [&](int left, int right) {
      if (left < 0 || right < 0) return;
      const size_t size = symbols[left].size + symbols[right].size;
      const int32_t id = find_piece(std::string_view(text).substr(symbols[left].offset, size));
      if (id >= 0) queue.push({v_.scores[id], left, right, size});
    };
    for (int i = 1; i < static_cast<int>(symbols.size()); ++i) try_add(i - 1, i);

    while (!queue.empty()) {
      const Bigram top = queue.top();
      queue.pop();
      Symbol& left = symbols[top.left];
      Symbol& right = symbols[top.right];
      if (left.size == 0 || right.size == 0 || left.size + right.size != top.size) continue;
      left.size += right.size;
      right.size = 0;
      left.next = right.next;
      if (right.next >= 0) symbols[right.next].prev = top.left;
      try_add(left.prev, top.left);
      try_add(top.left, left.next);
    }

    for (int i = symbols.empty() ? -1 : 0; i != -1; i = symbols[i].next) {
      const std::string_view piece = std::string_view(text).substr(symbols[i].offset, symbols[i].size);
      const int32_t id = find_piece(piece);
      if (id >= 0) {
        out.push_back(id);
      } else if (has_all_bytes(piece)) {
        for (char c : piece) out.push_back(byte_ids_[static_cast<uint8_t>(c)]);
      } else if (v_.unk >= 0) {
        out.push_back(v_.unk);
      } else {
        throw Error(ErrorCode::kInvalidArgument, "text has a character the vocabulary cannot encode");
      }
    }
  }

  Vocabulary v_;
  StringMap<int32_t> piece_ids_;
  std::array<int32_t, 256> byte_ids_;  // byte value -> its <0xXX> token
  std::vector<int16_t> byte_values_;   // token -> byte value, -1 if not a byte token
  SpecialTokenMatcher specials_;
};

}  // namespace

std::string spm_escape_spaces(std::string_view text) {
  std::string out;
  out.reserve(text.size() * 2);
  for (char c : text) {
    if (c == ' ') {
      out += kSpaceMark;
    } else {
      out.push_back(c);
    }
  }
  return out;
}

int parse_byte_piece(std::string_view piece) {
  auto hex = [](char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  };
  if (piece.size() != 6 || !piece.starts_with("<0x") || piece[5] != '>') return -1;
  const int high = hex(piece[3]);
  const int low = hex(piece[4]);
  return (high < 0 || low < 0) ? -1 : high * 16 + low;
}

std::string spm_piece_text(std::string_view piece, bool after_bos) {
  std::string text;
  for (size_t i = 0; i < piece.size();) {
    if (piece.substr(i).starts_with(kSpaceMark)) {
      text.push_back(' ');
      i += kSpaceMark.size();
    } else {
      text.push_back(piece[i++]);
    }
  }
  if (after_bos && !text.empty() && text[0] == ' ') text.erase(0, 1);
  return text;
}

std::unique_ptr<Tokenizer> make_spm_vocab_tokenizer(Vocabulary vocab) {
  if (vocab.scores.size() != vocab.pieces.size() || vocab.types.size() != vocab.pieces.size()) {
    throw Error(ErrorCode::kCorrupt, "SPM vocabulary: pieces, scores and types differ in length");
  }
  return std::make_unique<SpmVocabTokenizer>(std::move(vocab));
}

}  // namespace tidal
