// Streaming decode: never emits part of a UTF-8 character, and the pieces it
// emits add up to what decode() gives for the whole sequence.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "model/tokenizer.h"
#include "model/utf8.h"

namespace tidal {
namespace {

const std::string kData = TIDAL_TEST_DATA;
const std::string kStoriesModel = kData + "/stories260K/tok512.model";
const std::string kSmolLM2 = std::string(TIDAL_SOURCE_DIR) + "/models/SmolLM2-135M-Instruct.Q4_1.gguf";
const std::string kReplacement = "\xEF\xBF\xBD";

bool valid_utf8(const std::string& s) {
  std::string copy;
  return append_valid_utf8(s, true, copy) == s.size() && copy == s;
}

// Pushes every id; checks each piece is whole UTF-8 and the total equals decode().
std::string stream(const Tokenizer& tok, const std::vector<int32_t>& ids) {
  IncrementalDecoder decoder(tok);
  std::string text;
  for (int32_t id : ids) {
    const std::string piece = decoder.push(id);
    EXPECT_TRUE(valid_utf8(piece)) << "partial UTF-8 after id " << id;
    text += piece;
  }
  text += decoder.flush();
  EXPECT_EQ(text, tok.decode(ids));
  return text;
}

TEST(Utf8, ReplacesMaximalIllFormedSubparts) {
  auto clean = [](const std::string& s) {
    std::string out;
    append_valid_utf8(s, true, out);
    return out;
  };
  EXPECT_EQ(clean("a\xC3\xA9z"), "a\xC3\xA9z");
  EXPECT_EQ(clean("\xFF"), kReplacement);
  EXPECT_EQ(clean("\xE2\x82z"), kReplacement + "z");  // truncated 3-byte sequence: one U+FFFD
  EXPECT_EQ(clean("\xED\xA0\x80"), kReplacement + kReplacement + kReplacement);  // surrogate
  EXPECT_EQ(clean("\xC0\xAF"), kReplacement + kReplacement);  // overlong
  std::string held;
  EXPECT_EQ(append_valid_utf8("ab\xF0\x9F", false, held), 2u);  // incomplete tail is held back
  EXPECT_EQ(held, "ab");
}

TEST(IncrementalDecoder, ByteFallbackEmojiComesOutWhole) {
  auto tok = load_tokenizer(kStoriesModel);
  const std::vector<int32_t> bytes = {3 + 0xF0, 3 + 0x9F, 3 + 0xA6, 3 + 0x99};  // U+1F999 as byte tokens
  IncrementalDecoder decoder(*tok);
  EXPECT_EQ(decoder.push(bytes[0]), "");
  EXPECT_EQ(decoder.push(bytes[1]), "");
  EXPECT_EQ(decoder.push(bytes[2]), "");
  EXPECT_EQ(decoder.push(bytes[3]), "\xF0\x9F\xA6\x99");
  EXPECT_EQ(decoder.flush(), "");
}

TEST(IncrementalDecoder, StreamsEqualDecode) {
  auto tok = load_tokenizer(kStoriesModel);
  for (const std::string s : {"Once upon a time, Lily saw a cat.", "Héllo wörld — 🦙🚀 中文 ✓", "a\nb  c"}) {
    const std::vector<int32_t> ids = tok->encode(s, true);
    EXPECT_EQ(stream(*tok, ids), tok->decode(ids));
  }
  // A fresh decoder is at the start of the text; after a prompt token the
  // first piece keeps its space unless that token is BOS.
  IncrementalDecoder fresh(*tok);
  EXPECT_EQ(fresh.push(403), "Once");
  IncrementalDecoder after_bos(*tok);
  after_bos.set_previous(tok->bos_id());
  EXPECT_EQ(after_bos.push(403), "Once");
  IncrementalDecoder after_word(*tok);
  after_word.set_previous(378);
  EXPECT_EQ(after_word.push(403), " Once");
}

TEST(IncrementalDecoder, InvalidBytesBecomeReplacementCharacters) {
  auto tok = load_tokenizer(kStoriesModel);
  int32_t a = -1;  // the piece "a", without a leading space
  for (int32_t id = 0; id < tok->vocab_size() && a < 0; ++id) {
    if (tok->id_to_piece(id) == "a") a = id;
  }
  ASSERT_GE(a, 0);
  {
    IncrementalDecoder decoder(*tok);
    EXPECT_EQ(decoder.push(3 + 0xE2), "");
    EXPECT_EQ(decoder.push(a), kReplacement + "a");  // the lead byte can no longer complete
  }
  {
    IncrementalDecoder decoder(*tok);
    EXPECT_EQ(decoder.push(3 + 0xF0), "");
    EXPECT_EQ(decoder.push(3 + 0x9F), "");
    EXPECT_EQ(decoder.flush(), kReplacement);  // stream ended inside a character
  }
  EXPECT_EQ(stream(*tok, {3 + 0xFF, a, 3 + 0xC3}), kReplacement + "a" + kReplacement);
}

TEST(IncrementalDecoder, SpecialTokensAreSilent) {
  auto tok = load_tokenizer(kStoriesModel);
  IncrementalDecoder decoder(*tok);
  EXPECT_EQ(decoder.push(tok->bos_id()), "");
  EXPECT_EQ(decoder.push(403), "Once");
  EXPECT_EQ(decoder.push(tok->eos_id()), "");
}

nlohmann::json read_golden(const std::string& path) {
  std::ifstream in(path);
  EXPECT_TRUE(in) << path;
  return nlohmann::json::parse(in);
}

// Streaming a reference generation after its prompt: prompt text plus the
// streamed text is the text of the whole sequence.
void expect_streamed_after_prompt(const Tokenizer& tok, const nlohmann::json& c) {
  const auto prompt = c["prompt_ids"].get<std::vector<int32_t>>();
  const auto generated = c["greedy_ids"].get<std::vector<int32_t>>();
  IncrementalDecoder decoder(tok);
  decoder.set_previous(prompt.back());
  std::string streamed;
  for (int32_t id : generated) streamed += decoder.push(id);
  streamed += decoder.flush();
  std::vector<int32_t> all = prompt;
  all.insert(all.end(), generated.begin(), generated.end());
  EXPECT_EQ(tok.decode(prompt) + streamed, tok.decode(all));
}

// stories260K's greedy_text is SentencePiece's DecodeIds of the generated
// ids, which drops the first piece's leading space. Streamed after the
// prompt, that space is kept.
TEST(IncrementalDecoder, StoriesGoldenGenerations) {
  const nlohmann::json golden = read_golden(kData + "/stories260K/golden.json");
  for (const std::string& path : {kStoriesModel, kData + "/stories260K/tok512.bin"}) {
    auto tok = load_tokenizer(path);
    for (const auto& c : golden["cases"]) {
      EXPECT_EQ(tok->decode(c["greedy_ids"].get<std::vector<int32_t>>()), c["greedy_text"].get<std::string>()) << path;
      expect_streamed_after_prompt(*tok, c);
    }
  }
}

// SmolLM2's greedy_text is HF's decode with special tokens printed.
TEST(IncrementalDecoder, SmolLM2GoldenGenerations) {
  if (!std::filesystem::exists(kSmolLM2)) GTEST_SKIP() << "model not present: " << kSmolLM2;
  if (!std::filesystem::exists(kData + "/smollm2/golden.json")) GTEST_SKIP() << "golden data not present";
  auto tok = load_tokenizer(kSmolLM2);
  const nlohmann::json golden = read_golden(kData + "/smollm2/golden.json");
  for (const auto& c : golden["cases"]) {
    std::string with_specials;
    for (int32_t id : c["greedy_ids"]) with_specials += tok->token_bytes(id, -1);
    EXPECT_EQ(with_specials, c["greedy_text"].get<std::string>());
    expect_streamed_after_prompt(*tok, c);
  }
}

// Byte-level BPE splits CJK and emoji characters across tokens.
TEST(IncrementalDecoder, SmolLM2MultibyteSplits) {
  if (!std::filesystem::exists(kSmolLM2)) GTEST_SKIP() << "model not present: " << kSmolLM2;
  auto tok = load_tokenizer(kSmolLM2);
  for (const std::string s : {"한국어 텍스트", "Emoji: 😀🎉👍🏽 and ❤️", "中文测试：你好，世界！", "plain ascii"}) {
    const std::vector<int32_t> ids = tok->encode(s, false);
    EXPECT_EQ(stream(*tok, ids), s);
  }
  const std::vector<int32_t> chat = tok->encode("<|im_start|>assistant\nHi 😀<|im_end|>", false, true);
  EXPECT_EQ(stream(*tok, chat), "assistant\nHi 😀");
}

}  // namespace
}  // namespace tidal
