#include "request_body.h"

#include <stdexcept>

namespace tidal::bench {

std::string request_body(const SampleRequest& s, const RequestBodyOptions& o) {
  nlohmann::json body = {
      {"model", o.model},
      // max_tokens rather than chat's newer max_completion_tokens: every
      // OpenAI-compatible server reads it on both endpoints.
      {"max_tokens", s.output_len},
      {"temperature", 0.0},
      {"stream", true},
      {"stream_options", {{"include_usage", true}}},
  };
  if (o.endpoint == Endpoint::chat) {
    if (!s.prompt_ids.empty()) throw std::invalid_argument("chat requests need text prompts, not token ids");
    body["messages"] = nlohmann::json::array({{{"role", "user"}, {"content", s.prompt_text}}});
  } else if (!s.prompt_ids.empty()) {
    body["prompt"] = s.prompt_ids;
  } else {
    body["prompt"] = s.prompt_text;
  }
  if (o.ignore_eos) body["ignore_eos"] = true;
  body.update(o.extra_body);
  return body.dump();
}

}  // namespace tidal::bench
