// What every endpoint handler needs: the models being served (each with its
// engine and metrics), the tokenizer and chat template they share, and the
// variant catalog.
#pragma once

#include <boost/asio/thread_pool.hpp>
#include <cstdint>
#include <string>
#include <vector>

#include "engine/async_engine.h"
#include "model/tokenizer.h"
#include "reconfig/reconfigurator.h"
#include "reconfig/served_model.h"
#include "server/api_error.h"
#include "server/metrics.h"

namespace tidal {

// One engine the server routes requests to: the base model, or one variant
// of it (`tidal serve --variants`). Its runtime can switch configuration
// while it serves; the engine loop stays the same object throughout.
struct ServedModel {
  std::vector<std::string> names;  // what requests may name it by; responses report the first
  ServedModelRuntime& runtime;
  AsyncEngine& engine;
  ServerMetrics& metrics;
  int max_model_len = 0;
  bool is_variant = false;         // derived from the base (its model card names the base as parent)
  Reconfigurator* reconfigurator = nullptr;  // with --reconfig advise|on (the base model only)

  const std::string& name() const { return names.front(); }
};

struct ServingContext {
  // Shared by every model: variants re-encode the weights, never the
  // vocabulary. Tokenizers are immutable after loading (per-call scratch
  // only), so request-pool and engine threads use this one concurrently.
  const Tokenizer& tokenizer;
  std::vector<ServedModel> models;  // the base first, then its variants
  std::string chat_template;        // GGUF template source; empty: the built-in plain format
  int64_t created = 0;              // server start, unix seconds
  std::string variant_catalog;      // the GET /v1/variants body, fixed at start-up
  std::string admin_key;            // Bearer key of /admin/ (empty: the admin API is disabled)
  // Parses, templates and tokenizes request bodies (--request-threads), so
  // that the HTTP threads never do (server/request_work.h).
  boost::asio::thread_pool& request_pool;

  const ServedModel& base() const { return models.front(); }

  // The model a request names. A request may leave `model` out (vLLM
  // allows it): that is the base. Naming a model not served is a 404
  // (ApiError model_not_found).
  ServedModel& resolve_model(const std::string& requested);
};

}  // namespace tidal
