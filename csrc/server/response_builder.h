// The JSON of OpenAI completion and chat-completion responses: whole
// responses, stream chunks, usage and the two logprobs layouts.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "engine/request.h"

namespace tidal {

enum class ApiKind { kCompletion, kChat };

// One generated token for logprobs output.
struct TokenLogprobs {
  std::string token;                                // its text (raw bytes; may be part of a character)
  float logprob = 0.0f;
  std::vector<std::pair<std::string, float>> top;   // the most likely alternatives, best first
  size_t text_offset = 0;                           // characters before it in the choice's text
};

struct Usage {
  int64_t prompt_tokens = 0;
  int64_t completion_tokens = 0;
};

struct ChoiceResult {
  std::string text;
  std::vector<TokenLogprobs> logprobs;
  std::optional<FinishReason> finish;
};

class ResponseBuilder {
 public:
  // `usage_in_stream`: stream_options.include_usage (chunks then carry "usage": null).
  ResponseBuilder(ApiKind kind, std::string model, bool logprobs, bool usage_in_stream);

  const std::string& id() const { return id_; }

  // Stream chunks, as the payload of one SSE event.
  std::string role_chunk(int index) const;  // chat only: announces the assistant turn
  std::string delta_chunk(int index, std::string_view text, std::span<const TokenLogprobs> logprobs,
                          std::optional<FinishReason> finish) const;
  std::string usage_chunk(const Usage& usage) const;

  // A whole response, choices in index order.
  std::string response(const std::vector<ChoiceResult>& choices, const Usage& usage) const;

 private:
  ApiKind kind_;
  std::string id_;
  std::string model_;
  int64_t created_;
  bool logprobs_;
  bool usage_in_stream_;
};

}  // namespace tidal
