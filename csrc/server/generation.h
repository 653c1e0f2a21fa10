// Runs one /v1/completions or /v1/chat/completions request: submits its
// prompts to the engine, follows their outputs on the connection's strand,
// and answers with one JSON response or an SSE stream (one chunk per
// choice per engine step). A client that disconnects has its requests
// aborted, which frees their KV blocks at once.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "engine/request.h"
#include "server/http_server.h"
#include "server/response_builder.h"
#include "server/serving_context.h"

namespace tidal {

struct GenerationPlan {
  ApiKind kind = ApiKind::kCompletion;
  std::vector<Request> requests;  // one per prompt, sampling complete; ids are assigned here
  std::vector<std::string> echo;  // per prompt: text put before each of its choices (completions' echo)
  bool stream = false;
  bool include_usage = false;
  bool logprobs = false;          // report logprobs (how many alternatives: sampling.logprobs)
  bool return_token_ids = false;  // vLLM's return_token_ids: prompt and output token ids in the response
  std::string prompt_param;       // the field prompt errors name: "prompt" or "messages"
};

// max_tokens for a prompt of `prompt_len` tokens: the client's value, or
// `default_max` (nullopt: the rest of the context). 400 when out of range or
// when prompt plus completion exceed `model`'s context.
int resolve_max_tokens(const ServedModel& model, std::optional<int64_t> requested, std::optional<int64_t> default_max,
                       size_t prompt_len, const std::string& prompt_param);

// Runs the plan on `model`'s engine. Must be called on the exchange's
// strand. Throws ApiError (400, 429, 503) before anything was sent;
// afterwards it answers on its own.
void run_generation(ServingContext& ctx, ServedModel& model, std::shared_ptr<Exchange> exchange, GenerationPlan plan);

}  // namespace tidal
