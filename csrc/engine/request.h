// What a client asks for, and what the engine reports back step by step.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "engine/sampler.h"
#include "engine/sampling_params.h"

namespace tidal {

struct Request {
  std::string id;                 // unique among live requests
  std::vector<int32_t> prompt;    // token ids, BOS included when the model wants it
  SamplingParams sampling;
  int priority = 0;               // lower runs first under the priority policy
};

enum class FinishReason { kStop, kLength, kAbort };

inline const char* finish_reason_name(FinishReason r) {
  switch (r) {
    case FinishReason::kStop: return "stop";
    case FinishReason::kLength: return "length";
    case FinishReason::kAbort: return "abort";
  }
  return "?";
}

// News about one choice (index < n) of a request from one engine step.
struct CompletionDelta {
  int index = 0;
  std::vector<int32_t> token_ids;          // tokens generated this step (usually one)
  std::vector<float> logprobs;             // per token, when logprobs >= 0
  std::vector<std::vector<TokenLogprob>> top_logprobs;  // per token, when logprobs > 0
  std::string text;                        // newly released UTF-8-complete text
  std::optional<FinishReason> finish;      // set on the choice's last delta
  std::string stop_reason;                 // the stop string matched, if any
};

struct RequestOutput {
  std::string request_id;
  std::vector<CompletionDelta> deltas;     // choices that changed this step
  bool finished = false;                   // every choice is done
  int prompt_tokens = 0;
  int completion_tokens = 0;               // across all choices so far
  int cached_prompt_tokens = 0;            // prompt tokens served from the prefix cache
  double queue_seconds = -1.0;             // admission -> first scheduled; set once, on the first output
  // Set, with finished, when the engine could not finish the request (its
  // data-parallel replica failed, or the model gave one of its sequences no
  // distribution to sample: NaN or no finite logit): the open choices end
  // with kAbort, and the server answers with an error rather than a
  // truncated completion.
  std::string error;
};

}  // namespace tidal
