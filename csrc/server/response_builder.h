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
  // With return_token_ids (vLLM's extension): the generated ids and the
  // ids of the prompt they continue.
  std::optional<std::vector<int32_t>> token_ids = std::nullopt;
  std::optional<std::vector<int32_t>> prompt_token_ids = std::nullopt;
};

// What a stream chunk carries with return_token_ids: the ids of this
// chunk's tokens, and on a choice's first chunk its prompt's ids.
struct ChunkTokenIds {
  std::span<const int32_t> token_ids;
  std::optional<std::span<const int32_t>> prompt_token_ids;
};

class ResponseBuilder {
 public:
  // `usage_in_stream`: stream_options.include_usage (chunks then carry "usage": null).
  ResponseBuilder(ApiKind kind, std::string model, bool logprobs, bool usage_in_stream);

  const std::string& id() const { return id_; }

  // Stream chunks, as the payload of one SSE event.
  std::string role_chunk(int index) const;  // chat only: announces the assistant turn
  std::string delta_chunk(int index, std::string_view text, std::span<const TokenLogprobs> logprobs,
                          std::optional<FinishReason> finish, const std::optional<ChunkTokenIds>& ids = std::nullopt) const;
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
