// Text <-> token ids. Implementations: SentencePiece (.model via
// libsentencepiece), SPM-style score merges from a vocabulary list (GGUF
// `llama` vocabularies and llama2.c tokenizer .bin files), and byte-level BPE
// (GGUF `gpt2` vocabularies with merges and a pre-tokenizer regex).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace tidal {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  // Encodes text. `add_bos` prepends the BOS id when the model defines one.
  // Text of special tokens (e.g. "<|im_start|>") maps to their single id when
  // `parse_special` is set, as chat templates need.
  virtual std::vector<int32_t> encode(std::string_view text, bool add_bos, bool parse_special = false) const = 0;

  // The raw bytes one token stands for (byte-fallback tokens give one byte,
  // SPM's U+2581 becomes a space, byte-level BPE symbols are un-mapped).
  // `prev` is the preceding token or -1: SentencePiece drops the leading
  // space of the first piece after BOS.
  virtual std::string token_bytes(int32_t id, int32_t prev) const = 0;

  // Decodes a whole sequence (no special tokens printed). The sequence
  // starts the text, as if after BOS: SentencePiece's dummy-prefix space is
  // dropped, as its DecodeIds does. The result is valid UTF-8: ill-formed
  // byte sequences become U+FFFD.
  virtual std::string decode(const std::vector<int32_t>& ids) const;

  virtual int vocab_size() const = 0;
  virtual int32_t bos_id() const = 0;   // -1 when none
  virtual int32_t eos_id() const = 0;   // -1 when none
  virtual bool add_bos_by_default() const = 0;
  virtual bool is_special(int32_t id) const = 0;  // control tokens: never printed
  // Additional ids that end generation (e.g. <|im_end|> for chat models).
  virtual std::vector<int32_t> extra_stop_ids() const { return {}; }
  virtual std::string id_to_piece(int32_t id) const = 0;  // the vocabulary string
};

// Turns a stream of token ids into UTF-8 text without ever emitting half a
// character: bytes of an incomplete sequence are held until completed.
class IncrementalDecoder {
 public:
  // A fresh decoder is at the start of the text (as after BOS), like
  // Tokenizer::decode; set_previous(last prompt token) continues a prompt.
  explicit IncrementalDecoder(const Tokenizer& tokenizer) : tokenizer_(tokenizer), prev_(tokenizer.bos_id()) {}
  // Returns the newly complete text after appending `id` (may be empty).
  // Special tokens add no text; bytes that can no longer form a character
  // become U+FFFD, so pushes + flush always equal Tokenizer::decode.
  std::string push(int32_t id);
  // Any held bytes at end of stream, with invalid sequences replaced by U+FFFD.
  std::string flush();
  void set_previous(int32_t id) { prev_ = id; }

 private:
  const Tokenizer& tokenizer_;
  std::string pending_;
  int32_t prev_;
};

class GgufFile;

std::unique_ptr<Tokenizer> load_sentencepiece_tokenizer(const std::string& model_path);
std::unique_ptr<Tokenizer> load_llama2c_tokenizer(const std::string& bin_path);
std::unique_ptr<Tokenizer> load_gguf_tokenizer(const GgufFile& gguf);
// Picks by file: .model -> SentencePiece, .bin -> llama2.c, .gguf -> embedded vocab.
std::unique_ptr<Tokenizer> load_tokenizer(const std::string& path);

}  // namespace tidal
