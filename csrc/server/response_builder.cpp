#include "server/response_builder.h"

#include <chrono>
#include <cmath>
#include <nlohmann/json.hpp>
#include <random>

#include "server/json_text.h"

namespace tidal {

using nlohmann::json;

namespace {

std::string random_id(const char* prefix) {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  char hex[33];
  std::snprintf(hex, sizeof hex, "%016llx%016llx", (unsigned long long)rng(), (unsigned long long)rng());
  return std::string(prefix) + hex;
}

// JSON has no -inf; vLLM writes -9999 for impossible tokens.
double finite_logprob(float lp) { return std::isfinite(lp) ? double(lp) : -9999.0; }

json byte_list(const std::string& s) {
  json bytes = json::array();
  for (unsigned char c : s) bytes.push_back(int(c));
  return bytes;
}

json finish_json(std::optional<FinishReason> finish) {
  return finish ? json(finish_reason_name(*finish)) : json(nullptr);
}

// {"tokens", "token_logprobs", "top_logprobs", "text_offset"}; each top
// dictionary also holds the sampled token, as vLLM's does.
json completion_logprobs(std::span<const TokenLogprobs> lps) {
  json tokens = json::array(), token_logprobs = json::array(), top = json::array(), offsets = json::array();
  for (const TokenLogprobs& t : lps) {
    tokens.push_back(t.token);
    token_logprobs.push_back(finite_logprob(t.logprob));
    json alternatives = json::object();
    for (const auto& [token, lp] : t.top) alternatives.emplace(token, finite_logprob(lp));
    alternatives.emplace(t.token, finite_logprob(t.logprob));
    top.push_back(std::move(alternatives));
    offsets.push_back(t.text_offset);
  }
  return {{"tokens", tokens}, {"token_logprobs", token_logprobs}, {"top_logprobs", top}, {"text_offset", offsets}};
}

// {"content": [{"token", "logprob", "bytes", "top_logprobs": [...]}]}
json chat_logprobs(std::span<const TokenLogprobs> lps) {
  json content = json::array();
  for (const TokenLogprobs& t : lps) {
    json top = json::array();
    for (const auto& [token, lp] : t.top) {
      top.push_back({{"token", token}, {"logprob", finite_logprob(lp)}, {"bytes", byte_list(token)}});
    }
    content.push_back({{"token", t.token},
                       {"logprob", finite_logprob(t.logprob)},
                       {"bytes", byte_list(t.token)},
                       {"top_logprobs", std::move(top)}});
  }
  return {{"content", std::move(content)}, {"refusal", nullptr}};
}

json usage_json(const Usage& u) {
  return {{"prompt_tokens", u.prompt_tokens},
          {"completion_tokens", u.completion_tokens},
          {"total_tokens", u.prompt_tokens + u.completion_tokens}};
}

}  // namespace

ResponseBuilder::ResponseBuilder(ApiKind kind, std::string model, bool logprobs, bool usage_in_stream)
    : kind_(kind), id_(random_id(kind == ApiKind::kChat ? "chatcmpl-" : "cmpl-")), model_(std::move(model)),
      created_(std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch())
                   .count()),
      logprobs_(logprobs), usage_in_stream_(usage_in_stream) {}

std::string ResponseBuilder::role_chunk(int index) const {
  json chunk = {{"id", id_},
                {"object", "chat.completion.chunk"},
                {"created", created_},
                {"model", model_},
                {"choices",
                 {{{"index", index},
                   {"delta", {{"role", "assistant"}, {"content", ""}}},
                   {"logprobs", nullptr},
                   {"finish_reason", nullptr}}}}};
  if (usage_in_stream_) chunk["usage"] = nullptr;
  return json_text(chunk);
}

std::string ResponseBuilder::delta_chunk(int index, std::string_view text, std::span<const TokenLogprobs> logprobs,
                                         std::optional<FinishReason> finish,
                                         const std::optional<ChunkTokenIds>& ids) const {
  json choice = {{"index", index}};
  if (kind_ == ApiKind::kChat) {
    // The closing chunk of a choice carries an empty delta, as OpenAI's does.
    choice["delta"] = text.empty() && finish ? json::object() : json{{"content", text}};
    choice["logprobs"] = logprobs_ ? chat_logprobs(logprobs) : json(nullptr);
  } else {
    choice["text"] = text;
    choice["logprobs"] = logprobs_ ? completion_logprobs(logprobs) : json(nullptr);
  }
  choice["finish_reason"] = finish_json(finish);
  if (ids) {
    choice["token_ids"] = std::vector<int32_t>(ids->token_ids.begin(), ids->token_ids.end());
    if (ids->prompt_token_ids) {
      choice["prompt_token_ids"] = std::vector<int32_t>(ids->prompt_token_ids->begin(), ids->prompt_token_ids->end());
    }
  }
  json chunk = {{"id", id_},
                {"object", kind_ == ApiKind::kChat ? "chat.completion.chunk" : "text_completion"},
                {"created", created_},
                {"model", model_},
                {"choices", json::array({std::move(choice)})}};
  if (usage_in_stream_) chunk["usage"] = nullptr;
  return json_text(chunk);
}

std::string ResponseBuilder::usage_chunk(const Usage& usage) const {
  return json_text({{"id", id_},
                    {"object", kind_ == ApiKind::kChat ? "chat.completion.chunk" : "text_completion"},
                    {"created", created_},
                    {"model", model_},
                    {"choices", json::array()},
                    {"usage", usage_json(usage)}});
}

std::string ResponseBuilder::response(const std::vector<ChoiceResult>& choices, const Usage& usage) const {
  json list = json::array();
  for (size_t i = 0; i < choices.size(); ++i) {
    const ChoiceResult& c = choices[i];
    json choice = {{"index", i}};
    if (kind_ == ApiKind::kChat) {
      choice["message"] = {{"role", "assistant"}, {"content", c.text}};
      choice["logprobs"] = logprobs_ ? chat_logprobs(c.logprobs) : json(nullptr);
    } else {
      choice["text"] = c.text;
      choice["logprobs"] = logprobs_ ? completion_logprobs(c.logprobs) : json(nullptr);
    }
    choice["finish_reason"] = finish_json(c.finish);
    if (c.token_ids) choice["token_ids"] = *c.token_ids;
    if (c.prompt_token_ids) choice["prompt_token_ids"] = *c.prompt_token_ids;
    list.push_back(std::move(choice));
  }
  return json_text({{"id", id_},
                    {"object", kind_ == ApiKind::kChat ? "chat.completion" : "text_completion"},
                    {"created", created_},
                    {"model", model_},
                    {"choices", std::move(list)},
                    {"usage", usage_json(usage)}});
}

}  // namespace tidal
