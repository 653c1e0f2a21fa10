#include "server/openai_router.h"

#include <nlohmann/json.hpp>
#include <vector>

#include "server/admin_handler.h"
#include "server/auth.h"
#include "server/handlers.h"
#include "server/health.h"
#include "server/json_text.h"
#include "server/request_work.h"

namespace tidal {

namespace http = boost::beast::http;

namespace {

using Endpoint = void (*)(ServingContext&, std::shared_ptr<Exchange>);

struct Route {
  const char* path;
  http::verb method;
  Endpoint endpoint;
};

void health(ServingContext& ctx, std::shared_ptr<Exchange> exchange) {
  std::vector<ModelHealth> models;
  for (const ServedModel& model : ctx.models) models.push_back({model.name(), model.engine.stats()});
  const HealthReport report = health_report(models);
  if (report.body.empty()) return exchange->reply(report.status, "", "text/plain");
  exchange->reply(report.status, report.body);
}

void metrics(ServingContext& ctx, std::shared_ptr<Exchange> exchange) {
  std::vector<EngineMetrics> engines;
  for (const ServedModel& model : ctx.models) {
    engines.push_back({model.metrics, model.engine.stats(), &model.runtime, model.reconfigurator});
  }
  exchange->reply(200, render_metrics(engines), "text/plain; version=0.0.4; charset=utf-8");
}

// Every served name gets a card; a variant's names its base as parent.
nlohmann::json model_card(const ServingContext& ctx, const ServedModel& model, const std::string& name) {
  const std::string& base = ctx.base().name();
  return {{"id", name},
          {"object", "model"},
          {"created", ctx.created},
          {"owned_by", "tidal"},
          {"root", base},
          {"parent", model.is_variant ? nlohmann::json(base) : nlohmann::json(nullptr)},
          {"max_model_len", model.max_model_len}};
}

void list_models(ServingContext& ctx, std::shared_ptr<Exchange> exchange) {
  nlohmann::json data = nlohmann::json::array();
  for (const ServedModel& model : ctx.models) {
    for (const std::string& name : model.names) data.push_back(model_card(ctx, model, name));
  }
  exchange->reply(200, json_text({{"object", "list"}, {"data", std::move(data)}}));
}

void list_variants(ServingContext& ctx, std::shared_ptr<Exchange> exchange) {
  exchange->reply(200, ctx.variant_catalog);
}

const Route kRoutes[] = {
    {"/v1/completions", http::verb::post, handle_completions},
    {"/v1/chat/completions", http::verb::post, handle_chat_completions},
    {"/v1/models", http::verb::get, list_models},
    {"/v1/variants", http::verb::get, list_variants},
    {"/tokenize", http::verb::post, handle_tokenize},
    {"/detokenize", http::verb::post, handle_detokenize},
    {"/health", http::verb::get, health},
    {"/metrics", http::verb::get, metrics},
};

constexpr std::string_view kModelPrefix = "/v1/models/";

ApiError invalid_url(const HttpRequest& request, const std::string& path) {
  const auto method = request.method_string();
  return ApiError(404, "Invalid URL (" + std::string(method.data(), method.size()) + " " + path + ")",
                  "invalid_request_error", "", "not_found");
}

}  // namespace

void OpenAiRouter::operator()(const std::shared_ptr<Exchange>& exchange) const {
  const auto target = exchange->request().target();
  const std::string path(target.data(), std::min(target.size(), target.find('?')));
  try {
    if (is_admin_path(path)) {
      // The admin API has a key of its own; the inference key grants nothing there.
      if (ctx_.admin_key.empty()) {
        throw ApiError(403, "The admin API is disabled: start tidal serve with --admin-key KEY (or TIDAL_ADMIN_KEY).",
                       "invalid_request_error", "", "admin_disabled");
      }
      if (!authorized(exchange->request(), ctx_.admin_key)) {
        throw ApiError(401, "Incorrect admin key. Pass it as 'Authorization: Bearer <admin key>'.",
                       "invalid_request_error", "", "invalid_admin_key");
      }
      return handle_admin(ctx_, exchange, path);
    }
    // Before routing: without the key nothing is revealed, not even which paths exist.
    if (!authorized(exchange->request(), api_key_)) throw unauthorized();
    dispatch(exchange, path);
  } catch (...) {
    reply_exception(*exchange, std::current_exception());
  }
}

void OpenAiRouter::dispatch(const std::shared_ptr<Exchange>& exchange, const std::string& path) const {
  const HttpRequest& request = exchange->request();
  if (path.size() > kModelPrefix.size() && path.compare(0, kModelPrefix.size(), kModelPrefix) == 0) {
    if (request.method() != http::verb::get) {
      return exchange->reply_error(ApiError(405, "Method not allowed.", "invalid_request_error"), {{"Allow", "GET"}});
    }
    const std::string id = path.substr(kModelPrefix.size());
    return exchange->reply(200, json_text(model_card(ctx_, ctx_.resolve_model(id), id)));
  }
  for (const Route& route : kRoutes) {
    if (path != route.path) continue;
    if (request.method() != route.method) {
      const auto allowed = http::to_string(route.method);
      return exchange->reply_error(ApiError(405, "Method not allowed.", "invalid_request_error"),
                                   {{"Allow", std::string(allowed.data(), allowed.size())}});
    }
    return route.endpoint(ctx_, exchange);
  }
  throw invalid_url(request, path);
}

}  // namespace tidal
