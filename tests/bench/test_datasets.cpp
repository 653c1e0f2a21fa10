// Dataset loaders on small files written by the tests.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "dataset.h"

using namespace tidal::bench;

namespace {

std::string write_temp(const std::string& name, const std::string& content) {
  const auto dir = std::filesystem::temp_directory_path() / ("tidal_bench_test_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const auto path = (dir / name).string();
  std::ofstream(path) << content;
  return path;
}

// A toy tokenizer: one token per word, "t<id>". Id 0 decodes to nothing
// and id 99 to two tokens, so decode/encode round trips change lengths the
// way real byte-level vocabularies can.
std::vector<int32_t> encode_words(const std::string& text) {
  std::istringstream in(text);
  std::vector<int32_t> ids;
  for (std::string w; in >> w;) {
    const bool numbered = w.size() > 1 && w[0] == 't' && w.find_first_not_of("0123456789", 1) == std::string::npos;
    ids.push_back(numbered ? std::stoi(w.substr(1)) : 1);
  }
  return ids;
}

std::string decode_words(const std::vector<int32_t>& ids) {
  std::string text;
  for (int32_t id : ids) {
    if (id == 0) continue;
    if (id == 99) {
      text += "t98 t98 ";
    } else {
      text += 't';
      text += std::to_string(id);
      text += ' ';
    }
  }
  return text;
}

const TextCodec kWords{encode_words, decode_words};

}  // namespace

TEST(RandomDataset, ExactLengthsAndConsecutiveIds) {
  std::mt19937_64 rng(0);
  RandomDatasetOptions o;
  o.input_len = 16;
  o.output_len = 8;
  o.vocab_size = 100;
  const auto samples = random_dataset(50, o, rng);
  ASSERT_EQ(samples.size(), 50u);
  for (const auto& s : samples) {
    EXPECT_EQ(s.prompt_len, 16);
    EXPECT_EQ(s.output_len, 8);
    ASSERT_EQ(s.prompt_ids.size(), 16u);
    EXPECT_TRUE(s.prompt_text.empty());
    for (size_t j = 1; j < s.prompt_ids.size(); ++j) EXPECT_EQ(s.prompt_ids[j], (s.prompt_ids[j - 1] + 1) % 100);
    for (int32_t id : s.prompt_ids) EXPECT_TRUE(id >= 0 && id < 100);
  }
}

TEST(RandomDataset, RangeRatioAndSeed) {
  RandomDatasetOptions o;
  o.input_len = 100;
  o.output_len = 10;
  o.range_ratio = 0.5;
  o.vocab_size = 49152;
  std::mt19937_64 a(5), b(5);
  const auto sa = random_dataset(300, o, a);
  const auto sb = random_dataset(300, o, b);
  int distinct_lengths = 0, last = -1;
  for (size_t i = 0; i < sa.size(); ++i) {
    EXPECT_EQ(sa[i].prompt_ids, sb[i].prompt_ids);
    EXPECT_GE(sa[i].prompt_len, 50);
    EXPECT_LE(sa[i].prompt_len, 150);
    EXPECT_GE(sa[i].output_len, 5);
    EXPECT_LE(sa[i].output_len, 15);
    if (sa[i].prompt_len != last) ++distinct_lengths;
    last = sa[i].prompt_len;
  }
  EXPECT_GT(distinct_lengths, 10);
}

TEST(RandomDataset, NeedsVocabSize) {
  std::mt19937_64 rng(0);
  EXPECT_THROW(random_dataset(1, RandomDatasetOptions{}, rng), std::invalid_argument);
}

TEST(BurstGptDataset, FiltersAndKeepsTimestamps) {
  const auto path = write_temp("burst.csv",
                               "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\r\n"
                               "5,ChatGPT,10,20,30,Conversation log\r\n"
                               "7,GPT-4,3,4,7,Conversation log\r\n"
                               "8,GPT-4,6,0,6,Conversation log\r\n"
                               "9.5,GPT-4,2,5,7,API log\r\n"
                               "12,GPT-4,4,4,8,Conversation log\r\n");
  const auto samples = burstgpt_dataset(path, 2, 1000);
  ASSERT_EQ(samples.size(), 2u);
  EXPECT_EQ(*samples[0].timestamp_s, 7.0);
  EXPECT_EQ(samples[0].prompt_len, 3);
  EXPECT_EQ(samples[0].output_len, 4);
  EXPECT_EQ(samples[0].prompt_ids, (std::vector<int32_t>{0, 1, 2}));
  EXPECT_EQ(*samples[1].timestamp_s, 9.5);
  EXPECT_EQ(samples[1].prompt_ids, (std::vector<int32_t>{1, 2}));
  EXPECT_THROW(burstgpt_dataset(write_temp("bad.csv", "Timestamp,Model\n1,GPT-4\n"), 1, 10), std::runtime_error);
}

TEST(JsonlDataset, PromptsLengthsAndTimestamps) {
  const auto path = write_temp("d.jsonl",
                               "{\"prompt\": \"hello there\", \"output_tokens\": 7, \"timestamp\": 1.5}\n"
                               "\n"
                               "{\"prompt\": \"second\"}\n"
                               "{\"prompt\": \"third\"}\n");
  const auto samples = jsonl_dataset(path, 2, 33);
  ASSERT_EQ(samples.size(), 2u);
  EXPECT_EQ(samples[0].prompt_text, "hello there");
  EXPECT_EQ(samples[0].output_len, 7);
  EXPECT_EQ(*samples[0].timestamp_s, 1.5);
  EXPECT_EQ(samples[1].output_len, 33);
  EXPECT_FALSE(samples[1].timestamp_s);
  EXPECT_THROW(jsonl_dataset(write_temp("bad.jsonl", "{\"text\": 1}\n"), 1, 1), std::runtime_error);
  EXPECT_THROW(jsonl_dataset(write_temp("bad2.jsonl", "{\"prompt\": \"x\", \"output_tokens\": 0}\n"), 1, 1),
               std::runtime_error);
}

TEST(JsonlDataset, WrittenDatasetsReadBackTheSame) {
  std::vector<SampleRequest> samples(2);
  samples[0].prompt_text = "text prompt";
  samples[0].prompt_len = 2;
  samples[0].output_len = 5;
  samples[0].timestamp_s = 3.25;
  samples[1].prompt_ids = {4, 5, 6};
  samples[1].prompt_len = 3;
  samples[1].output_len = 7;
  const auto path = write_temp("roundtrip.jsonl", "");
  write_jsonl_dataset(path, samples);
  const auto back = jsonl_dataset(path, 10, 99);
  ASSERT_EQ(back.size(), 2u);
  for (size_t i = 0; i < 2; ++i) {
    EXPECT_EQ(back[i].prompt_text, samples[i].prompt_text);
    EXPECT_EQ(back[i].prompt_ids, samples[i].prompt_ids);
    EXPECT_EQ(back[i].prompt_len, samples[i].prompt_len);
    EXPECT_EQ(back[i].output_len, samples[i].output_len);
    EXPECT_EQ(back[i].timestamp_s, samples[i].timestamp_s);
  }
}

TEST(ShareGptDataset, FirstTurnPairsFilteredByLength) {
  std::string words_1100;
  for (int i = 0; i < 1100; ++i) words_1100 += "w ";
  const auto path = write_temp("share.json",
                               R"([
    {"id": "a", "conversations": [{"from": "human", "value": "one two three four five"},
                                  {"from": "gpt", "value": "six seven eight nine"}]},
    {"id": "short", "conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "a b c d e"}]},
    {"id": "solo", "conversations": [{"from": "human", "value": "only one turn here ok"}]},
    {"id": "long", "conversations": [{"from": "human", "value": ")" + words_1100 + R"("},
                                     {"from": "gpt", "value": "a b c d"}]},
    {"id": "b", "conversations": [{"from": "human", "value": "alpha beta gamma delta"},
                                  {"from": "gpt", "value": "x y"}]}
  ])");
  std::mt19937_64 rng(0);
  auto dynamic = sharegpt_dataset(path, 10, std::nullopt, kWords, rng);
  ASSERT_EQ(dynamic.size(), 1u);  // "b" has a 2-token answer, too short when lengths come from the data
  EXPECT_EQ(dynamic[0].prompt_text, "one two three four five");
  EXPECT_EQ(dynamic[0].prompt_len, 5);
  EXPECT_EQ(dynamic[0].output_len, 4);

  auto fixed = sharegpt_dataset(path, 10, 64, kWords, rng);
  EXPECT_EQ(fixed.size(), 2u);  // with a fixed output length only the prompt is checked
  for (const auto& s : fixed) EXPECT_EQ(s.output_len, 64);
}

TEST(TextPrompts, ReachTheTargetLengthThroughTheServersTokenizer) {
  std::mt19937_64 rng(0);
  RandomDatasetOptions o;
  o.input_len = 20;
  o.output_len = 4;
  o.vocab_size = 100;
  auto samples = random_dataset(40, o, rng);  // ids run through 0 and 99 for many offsets
  to_text_prompts(samples, kWords, o.vocab_size, rng);
  for (const auto& s : samples) {
    EXPECT_TRUE(s.prompt_ids.empty());
    EXPECT_FALSE(s.prompt_text.empty());
    EXPECT_EQ(s.prompt_len, 20);
    EXPECT_EQ(encode_words(s.prompt_text).size(), 20u);
    EXPECT_EQ(s.output_len, 4);
  }
}

TEST(TextPrompts, TextPromptsAreLeftAlone) {
  std::mt19937_64 rng(0);
  std::vector<SampleRequest> samples(1);
  samples[0].prompt_text = "keep me";
  to_text_prompts(samples, kWords, 0, rng);
  EXPECT_EQ(samples[0].prompt_text, "keep me");
  EXPECT_EQ(samples[0].prompt_len, 0);
}
