// Per-request decoding controls, with the meaning the OpenAI API and vLLM give them.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace tidal {

// A request's stop strings, immutable and shared: every prompt of a request
// and every choice of each matches against one copy, so a request's stop
// state costs its list once, not n * prompts times. Empty strings (which
// would end every completion at once) are dropped.
class StopList {
 public:
  StopList() = default;
  StopList(std::vector<std::string> strings);  // NOLINT: a list of strings is a stop list
  StopList(std::initializer_list<std::string> strings) : StopList(std::vector<std::string>(strings)) {}

  bool empty() const { return !strings_ || strings_->empty(); }
  size_t size() const { return strings_ ? strings_->size() : 0; }
  std::vector<std::string>::const_iterator begin() const { return strings_ ? strings_->begin() : kNone.begin(); }
  std::vector<std::string>::const_iterator end() const { return strings_ ? strings_->end() : kNone.end(); }

 private:
  static inline const std::vector<std::string> kNone;
  std::shared_ptr<const std::vector<std::string>> strings_;
};

struct SamplingParams {
  float temperature = 1.0f;   // 0 = greedy
  float top_p = 1.0f;         // nucleus mass, (0, 1]
  int top_k = 0;              // 0 or -1 = off
  float min_p = 0.0f;         // drop tokens with p < min_p * p_max
  float presence_penalty = 0.0f;   // OpenAI: subtract once per token already generated
  float frequency_penalty = 0.0f;  // OpenAI: subtract per occurrence in the output
  // vLLM (after CTRL): a token seen in the prompt or the output has its
  // logit divided by this when positive, multiplied when negative; > 0, 1 = off.
  float repetition_penalty = 1.0f;
  std::optional<uint64_t> seed;    // same seed => same output, whatever the batch
  int max_tokens = 16;
  StopList stop;                         // stop strings (excluded from the output)
  std::vector<int32_t> stop_token_ids;   // extra ids that end generation
  bool ignore_eos = false;
  int n = 1;                  // independent completions of one prompt
  int logprobs = -1;          // -1: none; 0: sampled token's; k: also the top k
};

}  // namespace tidal
