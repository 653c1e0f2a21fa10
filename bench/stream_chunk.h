// What one Server-Sent Event of an OpenAI-style completion stream says.
#pragma once

#include <optional>
#include <string>
#include <string_view>

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
};

// The "[DONE]" sentinel reads as an empty chunk.
StreamChunk parse_stream_chunk(std::string_view data, Endpoint endpoint);

}  // namespace tidal::bench
