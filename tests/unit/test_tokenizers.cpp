// Tokenizers against reference ids: llama.cpp's SPM test vectors, the
// SentencePiece library on the stories260K model, HF tokenizers on SmolLM2
// (tests/data/smollm2/tokenizer_vectors.json), and encode/decode round trips.
#include <gtest/gtest.h>
#include <sentencepiece_processor.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/error.h"
#include "model/tokenizer.h"
#include "model/tokenizer_vocab.h"

namespace tidal {
namespace {

const std::string kData = TIDAL_TEST_DATA;
const std::string kSpmVocab = kData + "/llama-spm-vocab/ggml-vocab-llama-spm.gguf";
const std::string kStoriesModel = kData + "/stories260K/tok512.model";
const std::string kStoriesBin = kData + "/stories260K/tok512.bin";
const std::string kAidreamsBin = kData + "/aidreams260K/tok512.bin";
const std::string kSmolLM2 = std::string(TIDAL_SOURCE_DIR) + "/models/SmolLM2-135M-Instruct.Q4_1.gguf";

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in) << path;
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

std::vector<std::string> split(const std::string& text, const std::string& sep) {
  std::vector<std::string> parts;
  size_t start = 0;
  for (size_t at = text.find(sep); at != std::string::npos; at = text.find(sep, start)) {
    parts.push_back(text.substr(start, at - start));
    start = at + sep.size();
  }
  parts.push_back(text.substr(start));
  return parts;
}

std::vector<int32_t> parse_ids(const std::string& line) {
  std::vector<int32_t> ids;
  size_t pos = 0;
  while (pos < line.size()) {
    if (line[pos] == ' ') {
      ++pos;
      continue;
    }
    size_t used = 0;
    ids.push_back(std::stoi(line.substr(pos), &used));
    pos += used;
  }
  return ids;
}

const std::vector<std::string> kStorySentences = {
    "Once upon a time",
    "Lily and Tom went to the park. They saw a big dog",
    "One day, a little girl named Lily found a needle in her room.",
    "She knew it was difficult to play with it because it was sharp.",
    "\"Mom, can I have a cookie?\" asked Ben. His mom smiled and said, \"Yes!\"",
    "The cat jumped over the fence.\nThe dog barked at the bird.",
    "Tim's toy car was red, blue and green; he loved it very much.",
    "They played until the sun went down. The end.",
    "Zoe ate 3 apples and 12 grapes.",
    "Héllo wörld, café naïve — emojis 🦙🚀 and 中文 too.",
};

// llama.cpp's tests/test-tokenizer-0 vectors for the Llama SPM vocabulary:
// inputs separated by a marker line, expected ids (no BOS) one line each.
TEST(SpmVocabTokenizer, MatchesLlamaCppVectors) {
  auto tok = load_tokenizer(kSpmVocab);
  ASSERT_EQ(tok->vocab_size(), 32000);
  EXPECT_EQ(tok->bos_id(), 1);
  EXPECT_EQ(tok->eos_id(), 2);
  EXPECT_TRUE(tok->add_bos_by_default());

  std::vector<std::string> inputs = split(read_file(kSpmVocab + ".inp"), "\n__ggml_vocab_test__\n");
  std::vector<std::string> outputs = split(read_file(kSpmVocab + ".out"), "\n");
  // Both files end with a separator, leaving one empty trailing element.
  ASSERT_EQ(inputs.back(), "");
  ASSERT_EQ(outputs.back(), "");
  inputs.pop_back();
  outputs.pop_back();
  ASSERT_EQ(inputs.size(), 46u);
  ASSERT_EQ(inputs.size(), outputs.size());
  for (size_t i = 0; i < inputs.size(); ++i) {
    const std::vector<int32_t> ids = tok->encode(inputs[i], /*add_bos=*/false);
    EXPECT_EQ(ids, parse_ids(outputs[i])) << "vector " << i << ": '" << inputs[i] << "'";
    // decode() drops the dummy space prefix again, giving the input back.
    EXPECT_EQ(tok->decode(ids), inputs[i]) << "vector " << i;
  }
}

TEST(SpmVocabTokenizer, SpecialTokensOnlyWhenAsked) {
  auto tok = load_tokenizer(kSpmVocab);
  const std::vector<int32_t> parsed = tok->encode("<s>Hi</s>", false, /*parse_special=*/true);
  ASSERT_EQ(parsed.size(), 3u);
  EXPECT_EQ(parsed.front(), 1);
  EXPECT_EQ(parsed.back(), 2);
  for (int32_t id : tok->encode("<s>Hi</s>", false, /*parse_special=*/false)) {
    EXPECT_FALSE(tok->is_special(id)) << id;
  }
  EXPECT_EQ(tok->encode("Hi", true).front(), 1);
}

TEST(SentencePieceTokenizer, StoriesModelBasics) {
  auto tok = load_tokenizer(kStoriesModel);
  EXPECT_EQ(tok->vocab_size(), 512);
  EXPECT_EQ(tok->bos_id(), 1);
  EXPECT_EQ(tok->eos_id(), 2);
  EXPECT_TRUE(tok->is_special(1));
  EXPECT_FALSE(tok->is_special(403));
  EXPECT_EQ(tok->encode("Once upon a time", true), (std::vector<int32_t>{1, 403, 407, 261, 378}));
  EXPECT_EQ(tok->id_to_piece(403), "\xE2\x96\x81Once");
  EXPECT_EQ(tok->token_bytes(403, 1), "Once");
  EXPECT_EQ(tok->token_bytes(403, 378), " Once");
  EXPECT_EQ(tok->token_bytes(3 + 0xF0, -1), "\xF0");
}

// decode() equals libsentencepiece's DecodeIds, which drops the dummy-prefix
// space at the start of the text. (<unk> is left out: this model stores its
// unk_surface with literal backslash escapes; we print " ⁇ ".)
TEST(SentencePieceTokenizer, DecodeMatchesLibrary) {
  auto tok = load_tokenizer(kStoriesModel);
  sentencepiece::SentencePieceProcessor sp;
  ASSERT_TRUE(sp.Load(kStoriesModel).ok());
  std::vector<std::vector<int>> cases = {
      {403}, {1, 403}, {2, 403}, {403, 2, 403}, {1, 1, 403}, {3 + 'A', 403}, {403, 407, 261, 378}};
  for (const std::string& s : kStorySentences) {
    std::vector<int> ids;
    ASSERT_TRUE(sp.Encode(s, &ids).ok());
    cases.push_back(ids);
  }
  for (const std::vector<int>& ids : cases) {
    std::string expected;
    ASSERT_TRUE(sp.Decode(ids, &expected).ok());
    EXPECT_EQ(tok->decode(std::vector<int32_t>(ids.begin(), ids.end())), expected) << ::testing::PrintToString(ids);
  }
}

// The llama2.c export of the same model must tokenize identically.
TEST(Llama2cTokenizer, AgreesWithSentencePieceModel) {
  auto model = load_tokenizer(kStoriesModel);
  auto bin = load_tokenizer(kStoriesBin);
  ASSERT_EQ(bin->vocab_size(), 512);
  EXPECT_EQ(bin->bos_id(), 1);
  EXPECT_EQ(bin->eos_id(), 2);
  EXPECT_TRUE(bin->add_bos_by_default());
  for (const std::string& s : kStorySentences) {
    const std::vector<int32_t> ids = bin->encode(s, true);
    EXPECT_EQ(ids, model->encode(s, true)) << s;
    EXPECT_EQ(bin->decode(ids), s);
  }
  for (int32_t id = 0; id < 512; ++id) {
    EXPECT_EQ(bin->id_to_piece(id), model->id_to_piece(id)) << id;
    EXPECT_EQ(bin->is_special(id), model->is_special(id)) << id;
    EXPECT_EQ(bin->token_bytes(id, 1), model->token_bytes(id, 1)) << id;
  }
}

TEST(Llama2cTokenizer, MatchesGoldenPromptIds) {
  const nlohmann::json golden = nlohmann::json::parse(read_file(kData + "/stories260K/golden.json"));
  auto bin = load_tokenizer(kStoriesBin);
  auto model = load_tokenizer(kStoriesModel);
  for (const auto& c : golden["cases"]) {
    const auto expected = c["prompt_ids"].get<std::vector<int32_t>>();
    EXPECT_EQ(bin->encode(c["prompt"].get<std::string>(), true), expected);
    EXPECT_EQ(model->encode(c["prompt"].get<std::string>(), true), expected);
  }
}

TEST(Llama2cTokenizer, AidreamsRoundTrip) {
  auto tok = load_tokenizer(kAidreamsBin);
  ASSERT_EQ(tok->vocab_size(), 512);
  for (const std::string& s : kStorySentences) {
    const std::vector<int32_t> ids = tok->encode(s, true);
    EXPECT_EQ(ids.front(), 1);
    EXPECT_EQ(tok->decode(ids), s);
  }
  // An emoji outside the vocabulary goes through four byte tokens.
  const std::vector<int32_t> ids = tok->encode("\xF0\x9F\xA6\x99", false);
  const std::vector<int32_t> bytes = {3 + 0xF0, 3 + 0x9F, 3 + 0xA6, 3 + 0x99};
  ASSERT_GE(ids.size(), 4u);
  EXPECT_EQ(std::vector<int32_t>(ids.end() - 4, ids.end()), bytes);
}

TEST(TokenizerLoading, Errors) {
  EXPECT_THROW(load_tokenizer(kData + "/does-not-exist.model"), Error);
  EXPECT_THROW(load_tokenizer(kData + "/does-not-exist.bin"), Error);
  EXPECT_THROW(load_tokenizer(kData + "/stories260K/golden.json"), Error);
  try {
    load_tokenizer(kData + "/does-not-exist.bin");
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kNotFound);
  }
  auto tok = load_tokenizer(kStoriesBin);
  EXPECT_THROW(tok->token_bytes(512, -1), Error);
  EXPECT_THROW(tok->id_to_piece(-1), Error);
}

// Small hand-made vocabularies pin down rules the real ones rarely exercise.
Vocabulary tiny_spm_vocab() {
  Vocabulary v;
  auto add = [&](std::string piece, float score, TokenType type) {
    v.pieces.push_back(std::move(piece));
    v.scores.push_back(score);
    v.types.push_back(type);
  };
  add("<unk>", 0, TokenType::kUnknown);
  add("<s>", 0, TokenType::kControl);
  add("</s>", 0, TokenType::kControl);
  add("<tool>", 0, TokenType::kUserDefined);
  add("\xE2\x96\x81", -1, TokenType::kNormal);  // 4: "▁"
  add("a", -1, TokenType::kNormal);             // 5
  add("b", -1, TokenType::kNormal);             // 6
  add("ab", -2, TokenType::kNormal);            // 7
  add("ba", -2, TokenType::kNormal);            // 8
  add("<0xC3>", 0, TokenType::kByte);           // 9
  add("<0xA9>", 0, TokenType::kByte);           // 10
  v.unk = 0, v.bos = 1, v.eos = 2;
  v.add_bos = true;
  return v;
}

TEST(SpmVocabTokenizer, EqualScoresMergeLeftmostFirst) {
  auto tok = make_spm_vocab_tokenizer(tiny_spm_vocab());
  EXPECT_EQ(tok->encode("aba", false), (std::vector<int32_t>{7, 5}));
  EXPECT_EQ(tok->encode("bab", false), (std::vector<int32_t>{8, 6}));
}

TEST(SpmVocabTokenizer, ByteFallbackAndUnknown) {
  auto tok = make_spm_vocab_tokenizer(tiny_spm_vocab());
  EXPECT_EQ(tok->encode("\xC3\xA9", false), (std::vector<int32_t>{9, 10}));  // é: no piece, both bytes exist
  EXPECT_EQ(tok->encode("z", false), (std::vector<int32_t>{0}));              // no piece, no byte tokens
  EXPECT_EQ(tok->decode({9, 10}), "\xC3\xA9");
}

TEST(SpmVocabTokenizer, UserDefinedAlwaysMatchedControlOnlyOnRequest) {
  Vocabulary v = tiny_spm_vocab();
  v.add_space_prefix = true;
  auto tok = make_spm_vocab_tokenizer(std::move(v));
  // Text after a special token gets the dummy prefix again, as in llama.cpp.
  EXPECT_EQ(tok->encode("a<tool>b", false), (std::vector<int32_t>{4, 5, 3, 4, 6}));
  EXPECT_EQ(tok->encode("<s>a", false, true), (std::vector<int32_t>{1, 4, 5}));
  for (int32_t id : tok->encode("<s>a", false, false)) EXPECT_NE(id, 1);
  EXPECT_EQ(tok->decode({1, 4, 5, 3}), "a<tool>");  // control tokens are not printed, user-defined ones are
}

Vocabulary tiny_bpe_vocab(const std::string& pre) {
  Vocabulary v;
  for (std::string piece : {"a", "b", "c", "ab", "abc", "\xC4\xA0", "<|end|>"}) v.pieces.push_back(piece);
  v.types.assign(v.pieces.size(), TokenType::kNormal);
  v.types.back() = TokenType::kControl;
  v.merges = {"a b"};  // "abc" is a token but no merge builds it
  v.pre = pre;
  v.eos = 6;
  return v;
}

TEST(BpeTokenizer, Llama3TakesWholeTokensBeforeMerging) {
  EXPECT_EQ(make_bpe_tokenizer(tiny_bpe_vocab("gpt2"))->encode("abc", false), (std::vector<int32_t>{3, 2}));
  EXPECT_EQ(make_bpe_tokenizer(tiny_bpe_vocab("llama3"))->encode("abc", false), (std::vector<int32_t>{4}));
  // Unknown pre-tokenizer names get the GPT-2 pattern.
  EXPECT_EQ(make_bpe_tokenizer(tiny_bpe_vocab("no-such-pre"))->encode("ab c", false), (std::vector<int32_t>{3, 5, 2}));
}

class SmolLM2Tokenizer : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!std::filesystem::exists(kSmolLM2)) GTEST_SKIP() << "model not present: " << kSmolLM2;
    static std::unique_ptr<Tokenizer> shared = load_tokenizer(kSmolLM2);
    tok = shared.get();
  }
  const Tokenizer* tok = nullptr;
};

TEST_F(SmolLM2Tokenizer, Metadata) {
  EXPECT_EQ(tok->vocab_size(), 49152);
  EXPECT_EQ(tok->bos_id(), 1);
  EXPECT_EQ(tok->eos_id(), 2);
  EXPECT_FALSE(tok->add_bos_by_default());
  EXPECT_EQ(tok->extra_stop_ids(), std::vector<int32_t>{0});  // <|endoftext|>; EOS is <|im_end|>
  EXPECT_TRUE(tok->is_special(0));
  EXPECT_TRUE(tok->is_special(1));
  EXPECT_FALSE(tok->is_special(19556));
  EXPECT_EQ(tok->id_to_piece(905), "\xC4\xA0world");  // "Ġworld"
  EXPECT_EQ(tok->token_bytes(905, -1), " world");
}

// Ids from HF tokenizers (add_special_tokens=False). HF always matches the
// text of special tokens, hence parse_special here.
TEST_F(SmolLM2Tokenizer, MatchesHfVectors) {
  const std::string path = kData + "/smollm2/tokenizer_vectors.json";
  if (!std::filesystem::exists(path)) GTEST_SKIP() << "vectors not present: " << path;
  const nlohmann::json vectors = nlohmann::json::parse(read_file(path));
  ASSERT_GT(vectors.size(), 0u);
  for (const auto& v : vectors) {
    const std::string text = v["text"].get<std::string>();
    EXPECT_EQ(tok->encode(text, false, /*parse_special=*/true), v["ids"].get<std::vector<int32_t>>()) << text;
  }
}

TEST_F(SmolLM2Tokenizer, MatchesGoldenPromptIds) {
  const std::string path = kData + "/smollm2/golden.json";
  if (!std::filesystem::exists(path)) GTEST_SKIP() << "golden data not present: " << path;
  const nlohmann::json golden = nlohmann::json::parse(read_file(path));
  for (const auto& c : golden["cases"]) {
    const std::string prompt = c["prompt"].get<std::string>();
    EXPECT_EQ(tok->encode(prompt, false, true), c["prompt_ids"].get<std::vector<int32_t>>()) << prompt;
  }
}

TEST_F(SmolLM2Tokenizer, KnownEncodings) {
  EXPECT_EQ(tok->encode("Hello world", false), (std::vector<int32_t>{19556, 905}));
  EXPECT_EQ(tok->encode("12345", false), (std::vector<int32_t>{33, 34, 35, 36, 37}));  // one token per digit
  EXPECT_EQ(tok->encode("<|im_start|>user", false, true).front(), 1);
  EXPECT_NE(tok->encode("<|im_start|>user", false, false).front(), 1);
  EXPECT_EQ(tok->encode("Hi", true).front(), 1);
}

TEST_F(SmolLM2Tokenizer, RoundTrips) {
  const std::vector<std::string> texts = {
      "",
      "Hello world",
      "  leading and trailing  ",
      "line one\nline two\r\n\ttabbed",
      "Numbers 3.14159, 1,000,000 and ½ ² Ⅷ",
      "Emoji 😀🎉👍🏽 ❤️ and 中文测试 한국어 Ελληνικά",
      "<|im_start|> is text here",
      "code: for (int i = 0; i < n; ++i) { x[i] *= 2; }",
  };
  for (const std::string& s : texts) EXPECT_EQ(tok->decode(tok->encode(s, false)), s) << s;
}

// SmolLM2's vocabulary has no symbol for some bytes (0xFF, 0xC0, 0x04, ...):
// like HF tokenizers they are dropped, not mapped to the unknown token
// (which is <|endoftext|>). Checked against HF on random text with 0x04.
TEST_F(SmolLM2Tokenizer, BytesOutsideTheVocabularyAreDropped) {
  const std::vector<int32_t> ids = tok->encode("invalid \xFF\xFE bytes\x04 kept", false);
  for (int32_t id : ids) EXPECT_FALSE(tok->is_special(id)) << id;
  EXPECT_EQ(tok->decode(ids), "invalid  bytes kept");
  // Dropped before merging, so their neighbours merge across them (HF: " >" is one token).
  EXPECT_EQ(tok->encode(" \x04>", false), tok->encode(" >", false));
  EXPECT_EQ(tok->encode(" >", false).size(), 1u);
}

// Long runs must neither blow up (regex backtracking, JIT stack) nor go
// quadratic in the merge loop.
TEST_F(SmolLM2Tokenizer, LongInputs) {
  const auto start = std::chrono::steady_clock::now();
  for (const std::string& s : {std::string(100000, ' '), std::string(100000, 'a'), std::string(50000, '7'),
                               std::string(20000, '\n') + "x"}) {
    const std::vector<int32_t> ids = tok->encode(s, false);
    EXPECT_FALSE(ids.empty());
    EXPECT_EQ(tok->decode(ids), s);
  }
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(), 10.0);
}

}  // namespace
}  // namespace tidal
