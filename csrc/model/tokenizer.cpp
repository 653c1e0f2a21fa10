// Tokenizer plumbing shared by all implementations: whole-sequence and
// streaming decode, and picking an implementation for a file.
#include "model/tokenizer.h"

#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "core/error.h"
#include "model/gguf.h"
#include "model/tokenizer_vocab.h"
#include "model/utf8.h"

namespace tidal {

namespace {

// Special tokens print nothing, so they do not change what the next piece
// follows - except BOS, which starts a text (this is how DecodeIds treats a
// leading </s> and a </s> between two texts).
int32_t next_previous(const Tokenizer& tok, int32_t prev, int32_t id) {
  return (tok.is_special(id) && id != tok.bos_id()) ? prev : id;
}

}  // namespace

std::string Tokenizer::decode(const std::vector<int32_t>& ids) const {
  std::string bytes;
  int32_t prev = bos_id();
  for (int32_t id : ids) {
    if (!is_special(id)) bytes += token_bytes(id, prev);
    prev = next_previous(*this, prev, id);
  }
  // Byte-fallback tokens can spell invalid UTF-8; callers (JSON) need valid
  // text, replaced the same way IncrementalDecoder does it.
  std::string text;
  append_valid_utf8(bytes, /*at_end=*/true, text);
  return text;
}

std::string IncrementalDecoder::push(int32_t id) {
  if (!tokenizer_.is_special(id)) pending_ += tokenizer_.token_bytes(id, prev_);
  prev_ = next_previous(tokenizer_, prev_, id);
  std::string text;
  pending_.erase(0, append_valid_utf8(pending_, /*at_end=*/false, text));
  return text;
}

std::string IncrementalDecoder::flush() {
  std::string text;
  append_valid_utf8(pending_, /*at_end=*/true, text);
  pending_.clear();
  return text;
}

namespace {

int32_t token_id_key(const GgufFile& gguf, const std::string& key, int64_t fallback, size_t vocab_size) {
  const int64_t id = gguf.get_int(key, fallback);
  if (id < -1 || id >= static_cast<int64_t>(vocab_size)) {
    throw Error(ErrorCode::kCorrupt, key + " out of range: " + std::to_string(id));
  }
  return static_cast<int32_t>(id);
}

// Chat models end a turn with a token other than EOS (SmolLM2's EOS is
// <|im_end|> but it may also emit <|endoftext|>); generation stops on these too.
std::vector<int32_t> find_extra_stop_ids(const Vocabulary& v) {
  std::vector<int32_t> ids;
  for (const char* name : {"<|im_end|>", "<|endoftext|>", "<|eot_id|>"}) {
    for (size_t id = 0; id < v.pieces.size(); ++id) {
      if (v.pieces[id] == name && static_cast<int32_t>(id) != v.eos) {
        ids.push_back(static_cast<int32_t>(id));
        break;
      }
    }
  }
  return ids;
}

}  // namespace

std::unique_ptr<Tokenizer> load_gguf_tokenizer(const GgufFile& gguf) {
  const std::string model = gguf.get_string("tokenizer.ggml.model");
  Vocabulary v;
  v.pieces = gguf.get_string_array("tokenizer.ggml.tokens");
  if (v.pieces.empty()) throw Error(ErrorCode::kCorrupt, "GGUF has no tokenizer.ggml.tokens");
  const size_t n = v.pieces.size();

  const std::vector<int64_t> types = gguf.get_int_array("tokenizer.ggml.token_type");
  if (!types.empty() && types.size() != n) throw Error(ErrorCode::kCorrupt, "tokenizer.ggml.token_type length differs from tokens");
  v.types.assign(n, TokenType::kNormal);
  for (size_t i = 0; i < types.size(); ++i) {
    if (types[i] < 0 || types[i] > static_cast<int64_t>(TokenType::kByte)) {
      throw Error(ErrorCode::kCorrupt, "bad token type " + std::to_string(types[i]) + " for token " + std::to_string(i));
    }
    v.types[i] = static_cast<TokenType>(types[i]);
  }
  v.bos = token_id_key(gguf, "tokenizer.ggml.bos_token_id", -1, n);
  v.eos = token_id_key(gguf, "tokenizer.ggml.eos_token_id", -1, n);
  v.extra_stop_ids = find_extra_stop_ids(v);

  if (model == "llama") {
    const std::vector<double> scores = gguf.get_float_array("tokenizer.ggml.scores");
    if (!scores.empty() && scores.size() != n) throw Error(ErrorCode::kCorrupt, "tokenizer.ggml.scores length differs from tokens");
    v.scores.assign(n, 0.0f);
    for (size_t i = 0; i < scores.size(); ++i) v.scores[i] = static_cast<float>(scores[i]);
    v.unk = token_id_key(gguf, "tokenizer.ggml.unknown_token_id", 0, n);
    v.add_bos = gguf.get_bool("tokenizer.ggml.add_bos_token", true);
    v.add_space_prefix = gguf.get_bool("tokenizer.ggml.add_space_prefix", true);
    return make_spm_vocab_tokenizer(std::move(v));
  }
  if (model == "gpt2") {
    v.merges = gguf.get_string_array("tokenizer.ggml.merges");
    if (v.merges.empty()) throw Error(ErrorCode::kCorrupt, "GGUF gpt2 tokenizer has no tokenizer.ggml.merges");
    v.pre = gguf.get_string("tokenizer.ggml.pre", "default");
    v.add_bos = gguf.get_bool("tokenizer.ggml.add_bos_token", false);
    return make_bpe_tokenizer(std::move(v));
  }
  throw Error(ErrorCode::kUnsupported, "unsupported tokenizer.ggml.model: '" + model + "'");
}

// llama2.c tokenizer.bin: int32 max_token_length, then per token float32
// score, int32 length, bytes. Its exporter wrote spaces for U+2581 and
// "\n<s>\n" / "\n</s>\n" for BOS/EOS; both are undone here so the file
// behaves exactly like the SentencePiece model it came from.
std::unique_ptr<Tokenizer> load_llama2c_tokenizer(const std::string& bin_path) {
  std::ifstream in(bin_path, std::ios::binary);
  if (!in) throw Error(ErrorCode::kNotFound, "tokenizer not found: " + bin_path);
  const std::string data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  size_t offset = 0;
  auto read = [&](void* dst, size_t size) {
    if (data.size() - offset < size) throw Error(ErrorCode::kCorrupt, "truncated llama2.c tokenizer: " + bin_path);
    std::memcpy(dst, data.data() + offset, size);
    offset += size;
  };
  int32_t max_token_length = 0;  // sizes llama2.c's fixed buffers; we have none
  read(&max_token_length, sizeof(max_token_length));

  Vocabulary v;
  while (offset < data.size()) {
    float score = 0;
    int32_t length = 0;
    read(&score, sizeof(score));
    read(&length, sizeof(length));
    if (length < 0) {
      throw Error(ErrorCode::kCorrupt, "bad token length in llama2.c tokenizer: " + bin_path);
    }
    std::string piece(static_cast<size_t>(length), '\0');
    read(piece.data(), piece.size());
    v.pieces.push_back(std::move(piece));
    v.scores.push_back(score);
  }
  if (v.pieces.size() < 3) throw Error(ErrorCode::kCorrupt, "llama2.c tokenizer has fewer than 3 tokens: " + bin_path);

  v.unk = 0, v.bos = 1, v.eos = 2;
  v.add_bos = true;
  v.add_space_prefix = true;
  v.types.assign(v.pieces.size(), TokenType::kNormal);
  v.types[0] = TokenType::kUnknown;
  v.types[1] = v.types[2] = TokenType::kControl;
  v.pieces[1] = "<s>";
  v.pieces[2] = "</s>";
  for (size_t id = 3; id < v.pieces.size(); ++id) {
    if (parse_byte_piece(v.pieces[id]) >= 0) {
      v.types[id] = TokenType::kByte;
    } else {
      v.pieces[id] = spm_escape_spaces(v.pieces[id]);
    }
  }
  return make_spm_vocab_tokenizer(std::move(v));
}

std::unique_ptr<Tokenizer> load_tokenizer(const std::string& path) {
  const std::string ext = std::filesystem::path(path).extension().string();
  if (ext == ".model") return load_sentencepiece_tokenizer(path);
  if (ext == ".bin") return load_llama2c_tokenizer(path);
  if (ext == ".gguf") return load_gguf_tokenizer(*GgufFile::open(path));
  throw Error(ErrorCode::kInvalidArgument, "unknown tokenizer file type (want .model, .bin or .gguf): " + path);
}

}  // namespace tidal
