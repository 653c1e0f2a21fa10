// Byte-level BPE (GPT-2 family; GGUF `tokenizer.ggml.model == "gpt2"`).
// Text is cut into pre-tokens by the regexes that `tokenizer.ggml.pre`
// names; each pre-token's bytes are mapped to printable characters with
// GPT-2's bytes_to_unicode table, and the adjacent pair with the lowest merge
// rank is merged (leftmost first) until no pair has a rank.
#include <array>
#include <queue>

#include "core/error.h"
#include "model/regex_split.h"
#include "model/special_tokens.h"
#include "model/tokenizer_vocab.h"

namespace tidal {

namespace {

// GPT-2's pre-tokenizer pattern, as HF's ByteLevel pre-tokenizer uses it.
const char* const kGpt2Pattern =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
// Llama 3's pattern (from its tokenizer.json).
const char* const kLlama3Pattern =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
    "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

struct PreTokenizer {
  std::vector<std::string> patterns;
  bool ignore_merges = false;  // a pre-token that is itself a token is taken whole
};

// Pre-tokenizer names as llama.cpp's converter writes them. Names we do not
// know get the plain GPT-2 pattern, which is exact only for GPT-2-style
// vocabularies; other models may then tokenize differently from their
// reference tokenizer (mostly around digits and newlines).
PreTokenizer pre_tokenizer_for(const std::string& name) {
  // These vocabularies split every digit apart before the GPT-2 pattern.
  for (const char* digits_first : {"smollm", "starcoder", "refact", "command-r", "codeshell", "exaone", "minerva"}) {
    if (name == digits_first) return {{"\\p{N}", kGpt2Pattern}, false};
  }
  if (name == "llama3" || name == "llama-v3" || name == "llama-bpe") return {{kLlama3Pattern}, true};
  return {{kGpt2Pattern}, false};
}

// GPT-2's bytes_to_unicode: printable Latin-1 bytes stand for themselves,
// the other 68 bytes are mapped to U+0100 onwards in byte order.
struct ByteMap {
  std::array<std::string, 256> to_text;  // byte -> UTF-8 of its stand-in character
  std::array<int16_t, 324> to_byte;      // stand-in code point -> byte, -1 if none

  ByteMap() {
    to_byte.fill(-1);
    int next = 256;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      const int cp = printable ? b : next++;
      to_byte[cp] = static_cast<int16_t>(b);
      if (cp < 0x80) {
        to_text[b] = std::string(1, static_cast<char>(cp));
      } else {
        to_text[b] = {static_cast<char>(0xC0 | (cp >> 6)), static_cast<char>(0x80 | (cp & 0x3F))};
      }
    }
  }

  // Undoes the mapping; characters outside it (none in a sane vocabulary)
  // are kept as they are.
  std::string decode(std::string_view piece) const {
    std::string out;
    for (size_t i = 0; i < piece.size();) {
      const auto b0 = static_cast<uint8_t>(piece[i]);
      if (b0 < 0x80 && to_byte[b0] >= 0) {
        out.push_back(static_cast<char>(to_byte[b0]));
        ++i;
        continue;
      }
      if ((b0 & 0xE0) == 0xC0 && i + 1 < piece.size()) {
        const int cp = ((b0 & 0x1F) << 6) | (static_cast<uint8_t>(piece[i + 1]) & 0x3F);
        if (cp < static_cast<int>(to_byte.size()) && to_byte[cp] >= 0) {
          out.push_back(static_cast<char>(to_byte[cp]));
          i += 2;
          continue;
        }
      }
      out.push_back(piece[i++]);
    }
    return out;
  }
};

const ByteMap& byte_map() {
  static const ByteMap map;
  return map;
}

class BpeTokenizer final : public Tokenizer {
 public:
  explicit BpeTokenizer(Vocabulary vocab)
      : v_(std::move(vocab)), pre_(pre_tokenizer_for(v_.pre)), splitter_(pre_.patterns) {
    texts_.reserve(v_.pieces.size());
    for (size_t id = 0; id < v_.pieces.size(); ++id) {
      const std::string& piece = v_.pieces[id];
      const auto i = static_cast<int32_t>(id);
      switch (v_.types[id]) {
        case TokenType::kControl:
          specials_.add(piece, i, /*always=*/false);
          texts_.push_back(piece);
          break;
        case TokenType::kUserDefined:
          specials_.add(piece, i, /*always=*/true);
          texts_.push_back(piece);
          break;
        default:
          piece_ids_.emplace(piece, i);
          texts_.push_back(byte_map().decode(piece));
          break;
      }
    }
    // A merge whose result is not a token could never be emitted; HF
    // rejects such files, we skip the merge so every symbol stays a token.
    for (size_t rank = 0; rank < v_.merges.size(); ++rank) {
      const std::string& merge = v_.merges[rank];
      const size_t space = merge.find(' ');
      if (space == std::string::npos) throw Error(ErrorCode::kCorrupt, "BPE merge without a space: " + merge);
      if (piece_ids_.count(merge.substr(0, space) + merge.substr(space + 1)) != 0) {
        merge_ranks_.emplace(merge, static_cast<int32_t>(rank));
      }
    }
  }

  std::vector<int32_t> encode(std::string_view text, bool add_bos, bool parse_special) const override {
    std::vector<int32_t> out;
    if (add_bos && v_.bos >= 0) out.push_back(v_.bos);
    for (const TextFragment& fragment : specials_.split(text, parse_special)) {
      if (fragment.id >= 0) {
        out.push_back(fragment.id);
        continue;
      }
      for (std::string_view word : splitter_.split(fragment.text)) encode_word(word, out);
    }
    return out;
  }

  std::string token_bytes(int32_t id, int32_t prev) const override {
    check_id(id);
    return texts_[id];
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
    size_t offset;  // into the mapped text
    size_t size;    // 0 once merged into its left neighbour
    int prev;
    int next;
  };
  struct Pair {
    int32_t rank;
    int left;
    int right;
    size_t size;  // bytes of the merged text; detects stale queue entries
  };
  struct PairOrder {
    // Lowest rank first; among equal ranks the leftmost pair.
    bool operator()(const Pair& a, const Pair& b) const {
      return a.rank > b.rank || (a.rank == b.rank && a.left > b.left);
    }
  };

  void check_id(int32_t id) const {
    if (id < 0 || id >= vocab_size()) throw Error(ErrorCode::kInvalidArgument, "token id out of range: " + std::to_string(id));
  }

  int32_t find_piece(std::string_view text) const {
    auto it = piece_ids_.find(text);
    return it == piece_ids_.end() ? -1 : it->second;
  }

  void encode_word(std::string_view word, std::vector<int32_t>& out) const {
    const ByteMap& map = byte_map();
    std::string text;
    std::vector<Symbol> symbols;
    for (char c : word) {
      const std::string& mapped = map.to_text[static_cast<uint8_t>(c)];
      // Vocabularies may lack bytes that never occur in their training text
      // (SmolLM2 has no 0xFF, 0xC0 or some control bytes). Like HF
      // tokenizers without an unknown token we drop them before merging; the
      // declared unknown token is often <|endoftext|>, which must not appear
      // inside a prompt.
      if (find_piece(mapped) < 0) continue;
      const int index = static_cast<int>(symbols.size());
      symbols.push_back({text.size(), mapped.size(), index - 1, index + 1});
      text += mapped;
    }
    if (symbols.empty()) return;
    symbols.back().next = -1;
    if (pre_.ignore_merges) {
      if (const int32_t id = find_piece(text); id >= 0) {
        out.push_back(id);
        return;
      }
    }

    std::priority_queue<Pair, std::vector<Pair>, PairOrder> queue;
    std::string key;
    auto try_add = [&](int left, int right) {
      if (left < 0 || right < 0) return;
      const Symbol& l = symbols[left];
      const Symbol& r = symbols[right];
      key.assign(text, l.offset, l.size);
      key.push_back(' ');
      key.append(text, r.offset, r.size);
      auto it = merge_ranks_.find(key);
      if (it != merge_ranks_.end()) queue.push({it->second, left, right, l.size + r.size});
    };
    for (int i = 1; i < static_cast<int>(symbols.size()); ++i) try_add(i - 1, i);

    while (!queue.empty()) {
      const Pair top = queue.top();
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

    // Every symbol is a token: single characters were checked above and
    // merges only make tokens.
    for (int i = 0; i != -1; i = symbols[i].next) {
      out.push_back(find_piece(std::string_view(text).substr(symbols[i].offset, symbols[i].size)));
    }
  }

  Vocabulary v_;
  PreTokenizer pre_;
  RegexSplitter splitter_;
  StringMap<int32_t> piece_ids_;     // ordinary tokens, in mapped form
  StringMap<int32_t> merge_ranks_;   // "left right" -> rank
  std::vector<std::string> texts_;   // token id -> the bytes it stands for
  SpecialTokenMatcher specials_;
};

}  // namespace

std::unique_ptr<Tokenizer> make_bpe_tokenizer(Vocabulary vocab) {
  if (vocab.types.size() != vocab.pieces.size()) {
    throw Error(ErrorCode::kCorrupt, "BPE vocabulary: pieces and types differ in length");
  }
  return std::make_unique<BpeTokenizer>(std::move(vocab));
}

}  // namespace tidal
