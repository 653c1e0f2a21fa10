// The server's own tokenizer, over HTTP, for datasets whose prompts are text
// (token counts) and for turning token-id prompts into text (servers that
// take only text, and the chat endpoint). The client never links a
// tokenizer, so every engine is measured with its own.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "server_url.h"

namespace tidal::bench {

class ServerTokenizer {
 public:
  // `tokenize_path`/`detokenize_path` are relative to the server root.
  ServerTokenizer(ServerUrl url, std::string model, std::string tokenize_path, std::string detokenize_path);

  // Without special tokens (no BOS). Throw std::runtime_error when the
  // server cannot answer.
  std::vector<int32_t> tokenize(const std::string& text) const;
  std::string detokenize(const std::vector<int32_t>& ids) const;

 private:
  ServerUrl url_;
  std::string model_;
  std::string tokenize_path_;
  std::string detokenize_path_;
};

}  // namespace tidal::bench
