// Request bodies of the OpenAI API (and vLLM's /tokenize, /detokenize),
// parsed and checked field by field. Anything wrong becomes a 400 ApiError
// that names the field. Unknown fields are ignored, as vLLM does by default,
// so that clients sending newer or vendor-specific options keep working;
// known options we cannot honour (tools, logit_bias, suffix, ...) are
// refused rather than silently dropped.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "engine/sampling_params.h"
#include "model/chat_template.h"

namespace tidal {

// Bounds on what one request may ask the engine to match per token (OpenAI
// allows 4 stop strings; vLLM sets no bound). Its prompts and choices share
// one copy of the list (StopList), so a request's stop strings take at most
// kMaxStopStrings * kMaxStopBytes = 16 KiB, and each generated token is
// checked against at most 16 of them.
inline constexpr size_t kMaxStopStrings = 16;
inline constexpr size_t kMaxStopBytes = 1024;
inline constexpr size_t kMaxStopTokenIds = 256;

// One prompt as the client sent it: text, or token ids.
struct PromptInput {
  bool is_ids = false;
  std::string text;
  std::vector<int32_t> ids;
};

// Fields both generation endpoints share.
struct GenerationOptions {
  std::string model;                 // empty when not given
  SamplingParams sampling;           // sampling.max_tokens is set later from max_tokens
  std::optional<int64_t> max_tokens; // as given; validated against the context later
  bool stream = false;
  bool include_usage = false;        // stream_options.include_usage
  bool return_token_ids = false;     // vLLM extension: the prompt's and every choice's token ids in the response
};

struct CompletionRequest {
  GenerationOptions options;
  std::vector<PromptInput> prompts;  // a batch: choices are numbered prompt * n + i
  bool echo = false;
  bool add_special_tokens = true;    // vLLM extension: BOS for text prompts
  int logprobs = -1;                 // -1: none
};

struct ChatRequest {
  GenerationOptions options;
  std::vector<ChatMessage> messages;
  bool add_generation_prompt = true; // vLLM extension
  bool logprobs = false;
  int top_logprobs = 0;
};

struct TokenizeRequest {
  std::string model;
  std::optional<std::string> prompt;       // either this ...
  std::vector<ChatMessage> messages;       // ... or these, rendered with the chat template
  bool add_generation_prompt = true;
  bool add_special_tokens = true;          // BOS for a prompt; messages are encoded as chat requests are
  bool return_token_strs = false;
};

struct DetokenizeRequest {
  std::string model;
  std::vector<int32_t> tokens;
};

// The body as a JSON object (400 for malformed JSON, invalid UTF-8, too deep
// nesting or a non-object).
nlohmann::json parse_json_object(const std::string& body);

CompletionRequest parse_completion_request(const nlohmann::json& body);
ChatRequest parse_chat_request(const nlohmann::json& body);
TokenizeRequest parse_tokenize_request(const nlohmann::json& body);
DetokenizeRequest parse_detokenize_request(const nlohmann::json& body);

}  // namespace tidal
