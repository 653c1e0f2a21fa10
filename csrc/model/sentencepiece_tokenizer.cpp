// SentencePiece .model files through libsentencepiece (llama2.c's tok*.model).
#include <sentencepiece_processor.h>

#include <filesystem>

#include "core/error.h"
#include "model/special_tokens.h"
#include "model/tokenizer_vocab.h"

namespace tidal {

namespace {

class SentencePieceTokenizer final : public Tokenizer {
 public:
  explicit SentencePieceTokenizer(const std::string& path) {
    if (!std::filesystem::exists(path)) throw Error(ErrorCode::kNotFound, "tokenizer not found: " + path);
    const auto status = processor_.Load(path);
    if (!status.ok()) throw Error(ErrorCode::kCorrupt, "cannot load SentencePiece model " + path + ": " + status.ToString());
    for (int id = 0; id < processor_.GetPieceSize(); ++id) {
      if (processor_.IsControl(id)) specials_.add(processor_.IdToPiece(id), id, /*always=*/false);
    }
  }

  std::vector<int32_t> encode(std::string_view text, bool add_bos, bool parse_special) const override {
    std::vector<int32_t> out;
    if (add_bos && bos_id() >= 0) out.push_back(bos_id());
    // SentencePiece never produces control ids from text, so special tokens
    // are cut out first; each run in between is encoded on its own (and so
    // gets its own dummy space prefix, as llama.cpp does).
    for (const TextFragment& fragment : specials_.split(text, parse_special)) {
      if (fragment.id >= 0) {
        out.push_back(fragment.id);
        continue;
      }
      std::vector<int> ids;
      const auto status = processor_.Encode(fragment.text, &ids);
      if (!status.ok()) throw Error(ErrorCode::kInvalidArgument, "SentencePiece encode failed: " + status.ToString());
      out.insert(out.end(), ids.begin(), ids.end());
    }
    return out;
  }

  std::string token_bytes(int32_t id, int32_t prev) const override {
    check_id(id);
    const std::string piece = processor_.IdToPiece(id);
    if (processor_.IsByte(id)) {
      return std::string(1, static_cast<char>(parse_byte_piece(piece)));
    }
    if (processor_.IsUnknown(id)) return std::string(kSpmUnknownText);
    if (processor_.IsControl(id)) return piece;
    return spm_piece_text(piece, prev >= 0 && prev == bos_id());
  }

  int vocab_size() const override { return processor_.GetPieceSize(); }
  int32_t bos_id() const override { return processor_.bos_id(); }
  int32_t eos_id() const override { return processor_.eos_id(); }
  bool add_bos_by_default() const override { return true; }
  bool is_special(int32_t id) const override { return id >= 0 && id < vocab_size() && processor_.IsControl(id); }
  std::string id_to_piece(int32_t id) const override {
    check_id(id);
    return processor_.IdToPiece(id);
  }

 private:
  void check_id(int32_t id) const {
    if (id < 0 || id >= vocab_size()) throw Error(ErrorCode::kInvalidArgument, "token id out of range: " + std::to_string(id));
  }

  sentencepiece::SentencePieceProcessor processor_;
  SpecialTokenMatcher specials_;
};

}  // namespace

std::unique_ptr<Tokenizer> load_sentencepiece_tokenizer(const std::string& model_path) {
  return std::make_unique<SentencePieceTokenizer>(model_path);
}

}  // namespace tidal
