#include "stream_chunk.h"

#include <nlohmann/json.hpp>

namespace tidal::bench {

namespace {

std::string content_of(const nlohmann::json& choice, Endpoint endpoint) {
  const nlohmann::json* holder = &choice;
  if (endpoint == Endpoint::chat) {
    auto delta = choice.find("delta");
    if (delta == choice.end() || !delta->is_object()) return {};
    holder = &*delta;
  }
  auto text = holder->find(endpoint == Endpoint::chat ? "content" : "text");
  return text != holder->end() && text->is_string() ? text->get<std::string>() : std::string();
}

// A missing or non-integer count reads as 0 (some servers send null).
int int_field(const nlohmann::json& obj, const char* key) {
  auto it = obj.find(key);
  return it != obj.end() && it->is_number_integer() ? it->get<int>() : 0;
}

// An array of integer ids; anything else (null, a non-integer) reads as absent.
std::optional<std::vector<int32_t>> token_ids_field(const nlohmann::json& obj, const char* key) {
  auto it = obj.find(key);
  if (it == obj.end() || !it->is_array()) return std::nullopt;
  std::vector<int32_t> ids;
  ids.reserve(it->size());
  for (const auto& id : *it) {
    if (!id.is_number_integer()) return std::nullopt;
    ids.push_back(id.get<int32_t>());
  }
  return ids;
}

}  // namespace

StreamChunk parse_stream_chunk(std::string_view data, Endpoint endpoint) {
  StreamChunk chunk;
  if (data == "[DONE]") return chunk;
  const nlohmann::json j = nlohmann::json::parse(data, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) {
    chunk.error = "stream event is not a JSON object: " + std::string(data.substr(0, 200));
    return chunk;
  }
  if (auto err = j.find("error"); err != j.end()) {
    chunk.error = err->is_object() && err->contains("message") && (*err)["message"].is_string()
                      ? (*err)["message"].get<std::string>()
                      : err->dump();
    return chunk;
  }
  if (auto choices = j.find("choices"); choices != j.end() && choices->is_array() && !choices->empty()) {
    const nlohmann::json& choice = choices->front();
    chunk.content = content_of(choice, endpoint);
    if (auto fr = choice.find("finish_reason"); fr != choice.end() && fr->is_string()) chunk.finish_reason = *fr;
    if (choice.is_object()) {
      chunk.token_ids = token_ids_field(choice, "token_ids");
      chunk.prompt_token_ids = token_ids_field(choice, "prompt_token_ids");
    }
  }
  if (auto ids = token_ids_field(j, "prompt_token_ids")) chunk.prompt_token_ids = std::move(ids);
  if (auto usage = j.find("usage"); usage != j.end() && usage->is_object()) {
    chunk.usage = Usage{int_field(*usage, "prompt_tokens"), int_field(*usage, "completion_tokens")};
  }
  return chunk;
}

}  // namespace tidal::bench
