// The JSON body of one benchmark request, as vLLM's client sends it:
// greedy (temperature 0), streamed with usage, max_tokens = the sample's
// output length, ignore_eos when asked, then the user's extra fields.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "dataset.h"
#include "stream_chunk.h"

namespace tidal::bench {

struct RequestBodyOptions {
  Endpoint endpoint = Endpoint::completions;
  std::string model;
  bool ignore_eos = false;
  nlohmann::json extra_body = nlohmann::json::object();  // merged last, overriding
};

// Throws std::invalid_argument for a token-id prompt on the chat endpoint
// (chat messages are text; detokenize first).
std::string request_body(const SampleRequest& s, const RequestBodyOptions& o);

}  // namespace tidal::bench
