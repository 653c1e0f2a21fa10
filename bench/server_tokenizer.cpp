#include "server_tokenizer.h"

#include <nlohmann/json.hpp>
#include <stdexcept>

#include "http_client.h"

namespace tidal::bench {

namespace {

nlohmann::json call(const ServerUrl& url, const std::string& path, const nlohmann::json& body) {
  const HttpResponse r = post_json_blocking(url, url.path(path), body.dump(), std::chrono::seconds(60));
  if (r.status != 200)
    throw std::runtime_error("POST " + path + " answered HTTP " + std::to_string(r.status) + ": " +
                             r.body.substr(0, 300));
  nlohmann::json j = nlohmann::json::parse(r.body, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) throw std::runtime_error("POST " + path + " did not answer a JSON object");
  return j;
}

}  // namespace

ServerTokenizer::ServerTokenizer(ServerUrl url, std::string model, std::string tokenize_path,
                                 std::string detokenize_path)
    : url_(std::move(url)),
      model_(std::move(model)),
      tokenize_path_(std::move(tokenize_path)),
      detokenize_path_(std::move(detokenize_path)) {}

// The text goes under each name a common server reads it from: "prompt"
// (vLLM, tidal), "content" (llama.cpp's server), "input" (llama-cpp-python's
// /extras/tokenize); servers ignore the names they do not know.
std::vector<int32_t> ServerTokenizer::tokenize(const std::string& text) const {
  const nlohmann::json j = call(url_, tokenize_path_,
                                {{"model", model_},
                                 {"prompt", text},
                                 {"content", text},
                                 {"input", text},
                                 {"add_special_tokens", false}});
  auto t = j.find("tokens");
  if (t == j.end() || !t->is_array())
    throw std::runtime_error("POST " + tokenize_path_ + ": no \"tokens\" in the answer");
  return t->get<std::vector<int32_t>>();
}

std::string ServerTokenizer::detokenize(const std::vector<int32_t>& ids) const {
  const nlohmann::json j = call(url_, detokenize_path_, {{"model", model_}, {"tokens", ids}});
  for (const char* key : {"prompt", "content", "text"})
    if (auto t = j.find(key); t != j.end() && t->is_string()) return t->get<std::string>();
  throw std::runtime_error("POST " + detokenize_path_ + ": no text in the answer");
}

}  // namespace tidal::bench
