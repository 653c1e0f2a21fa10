// What one Server-Sent Event of an OpenAI-style completion stream says.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace tidal::bench {

enum class Endpoint { completions, chat };

struct Usage {
  int prompt_tokens = 0;
  int completion_tokens = 0;
};

struct StreamChunk {
  std::string content;               // choices[0].text (completions) or choices[0].delta.content (chat)
  std::string finish_reason;         // choices[0].finish_reason; empty while the choice goes on
  std::optional<Usage> usage;        // present on the stream_options.include_usage chunk
  std::optional<std::string> error;  // an in-stream error object, or a payload that is not JSON
  // vLLM's "return_token_ids" extension: choices[0].token_ids (the ids of the
  // tokens this chunk adds, which may come with no text while a character is
  // incomplete), and "prompt_token_ids" (the first chunk's; tidal and vLLM's
  // chat put it on the response, vLLM's completions on the choice). Absent
  // when the server sends no such field.
  std::optional<std::vector<int32_t>> token_ids;
  std::optional<std::vector<int32_t>> prompt_token_ids;
};

// The "[DONE]" sentinel reads as an empty chunk.
StreamChunk parse_stream_chunk(std::string_view data, Endpoint endpoint);

}  // namespace tidal::bench
