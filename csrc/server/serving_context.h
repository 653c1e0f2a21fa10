// What every endpoint handler needs: the engine, the tokenizer, the names
// the model is served under, its chat template and the metrics.
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "engine/async_engine.h"
#include "model/tokenizer.h"
#include "server/api_error.h"
#include "server/metrics.h"

namespace tidal {

struct ServingContext {
  AsyncEngine& engine;
  const Tokenizer& tokenizer;
  ServerMetrics& metrics;
  std::vector<std::string> model_names;  // responses report the first
  std::string chat_template;             // GGUF template source; empty: the built-in plain format
  int max_model_len = 0;
  int64_t created = 0;                   // server start, unix seconds

  const std::string& model_name() const { return model_names.front(); }

  // A request may leave `model` out (vLLM allows it); naming another model is a 404.
  void check_model(const std::string& requested) const {
    if (requested.empty()) return;
    if (std::find(model_names.begin(), model_names.end(), requested) == model_names.end()) {
      throw model_not_found(requested);
    }
  }
};

}  // namespace tidal
