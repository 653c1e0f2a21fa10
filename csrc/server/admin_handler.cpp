#include "server/admin_handler.h"

#include <boost/asio/post.hpp>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <optional>
#include <string_view>

#include "core/error.h"
#include "server/json_text.h"
#include "server/openai_schema.h"

namespace tidal {

namespace http = boost::beast::http;
using json = nlohmann::json;

namespace {

constexpr std::string_view kAdminPrefix = "/admin/";

json model_status(const ServedModel& model) {
  json j = {{"model", model.name()},
            {"reconfig", model.reconfigurator ? model.reconfigurator->mode() : std::string("off")},
            {"pinned", model.reconfigurator && model.reconfigurator->pinned()},
            {"config", config_json(model.runtime.config())},
            {"state", serving_state_name(model.runtime.state())},
            {"storage", model.runtime.storage()},
            {"resident_mib", double(model.runtime.resident_bytes()) / double(1 << 20)},
            {"max_model_len", model.max_model_len}};
  const std::optional<SwitchRecord> last = model.runtime.last_switch();
  j["last_switch"] = last ? switch_json(*last) : json(nullptr);
  return j;
}

void get_config(ServingContext& ctx, const std::shared_ptr<Exchange>& exchange) {
  json models = json::array();
  for (const ServedModel& m : ctx.models) models.push_back(model_status(m));
  exchange->reply(200, json_text({{"object", "list"}, {"data", std::move(models)}}));
}

void get_switches(ServingContext& ctx, const std::shared_ptr<Exchange>& exchange) {
  json data = json::array();
  for (const ServedModel& m : ctx.models) {
    for (const SwitchRecord& r : m.runtime.switches()) {
      json j = switch_json(r);
      j["model"] = m.name();
      data.push_back(std::move(j));
    }
  }
  exchange->reply(200, json_text({{"object", "list"}, {"data", std::move(data)}}));
}

int int_field(const json& body, const char* name) {
  const json& v = body.at(name);
  if (!v.is_number_integer()) throw invalid_request(std::string("'") + name + "' must be an integer.", name, "invalid_type");
  const int64_t x = v.get<int64_t>();
  if (x < 1 || x > (int64_t(1) << 20)) throw invalid_request(std::string("'") + name + "' is out of range.", name, "invalid_value");
  return int(x);
}

struct SwitchRequest {
  std::string model;
  ConfigChange change;
};

SwitchRequest parse_switch_request(const json& body) {
  SwitchRequest r;
  for (const auto& [key, value] : body.items()) {
    static const char* const kKnown[] = {"model", "variant", "tp", "pp", "dp", "max_num_seqs",
                                         "max_num_batched_tokens", "target_tpot_ms"};
    if (std::find(std::begin(kKnown), std::end(kKnown), key) == std::end(kKnown)) {
      throw invalid_request("Unknown field '" + key + "'.", key, "unknown_field");
    }
  }
  if (!body.contains("model")) throw invalid_request("'model' is required.", "model", "missing_field");
  if (!body["model"].is_string()) throw invalid_request("'model' must be a string.", "model", "invalid_type");
  r.model = body["model"].get<std::string>();
  if (body.contains("variant")) {
    if (!body["variant"].is_string()) throw invalid_request("'variant' must be a string.", "variant", "invalid_type");
    r.change.variant = body["variant"].get<std::string>();
  }
  if (body.contains("tp")) r.change.tp = int_field(body, "tp");
  if (body.contains("pp")) r.change.pp = int_field(body, "pp");
  if (body.contains("dp")) r.change.dp = int_field(body, "dp");
  if (body.contains("max_num_seqs")) r.change.max_num_seqs = int_field(body, "max_num_seqs");
  if (body.contains("max_num_batched_tokens")) r.change.max_num_batched_tokens = int_field(body, "max_num_batched_tokens");
  if (body.contains("target_tpot_ms")) {
    const json& v = body["target_tpot_ms"];
    if (!v.is_number()) throw invalid_request("'target_tpot_ms' must be a number.", "target_tpot_ms", "invalid_type");
    r.change.target_tpot_ms = v.get<double>();
  }
  return r;
}

// ?wait=true (also 1): answer once the switch is done.
bool wants_wait(const HttpRequest& request) {
  const std::string_view target(request.target().data(), request.target().size());
  const size_t q = target.find('?');
  if (q == std::string_view::npos) return false;
  std::string_view query = target.substr(q + 1);
  while (!query.empty()) {
    const size_t amp = query.find('&');
    const std::string_view item = query.substr(0, amp);
    if (item == "wait=true" || item == "wait=1") return true;
    if (item.substr(0, 5) == "wait=" && item != "wait=false" && item != "wait=0") {
      throw invalid_request("'wait' must be true or false.", "wait", "invalid_value");
    }
    if (amp == std::string_view::npos) break;
    query = query.substr(amp + 1);
  }
  return false;
}

void put_config(ServingContext& ctx, const std::shared_ptr<Exchange>& exchange) {
  const bool wait = wants_wait(exchange->request());
  const SwitchRequest req = parse_switch_request(parse_json_object(exchange->request().body()));
  ServedModel& model = ctx.resolve_model(req.model);
  ServedModelRuntime::SwitchDone on_done;
  if (wait) {
    // Answered from the switch's thread once it is done: no HTTP thread waits.
    on_done = [exchange, name = model.name()](const SwitchRecord& record) {
      json body = switch_json(record);
      body["model"] = name;
      boost::asio::post(exchange->executor(), [exchange, text = json_text(body)] { exchange->reply(200, text); });
    };
  }
  uint64_t id = 0;
  try {
    id = model.runtime.request_switch(req.change, "operator", std::move(on_done));
  } catch (const SwitchConflict& e) {
    throw ApiError(409, e.what(), "invalid_request_error", "model", "switch_in_progress");
  } catch (const Error& e) {
    throw invalid_request(e.what(), "", "invalid_config");
  }
  // The operator comes first: the reconfigurator leaves this model alone
  // until DELETE /admin/v1/config/pin.
  if (model.reconfigurator) model.reconfigurator->pin();
  if (!wait) {
    exchange->reply(202, json_text({{"id", id}, {"model", model.name()}, {"status", "accepted"},
                                    {"pinned", model.reconfigurator != nullptr}}));
  }
}

// The value of `name` in the request's query string, if present.
std::optional<std::string> query_param(const HttpRequest& request, std::string_view name) {
  const std::string_view target(request.target().data(), request.target().size());
  const size_t q = target.find('?');
  if (q == std::string_view::npos) return std::nullopt;
  std::string_view query = target.substr(q + 1);
  while (!query.empty()) {
    const size_t amp = query.find('&');
    const std::string_view item = query.substr(0, amp);
    if (item.size() > name.size() && item.substr(0, name.size()) == name && item[name.size()] == '=') {
      return std::string(item.substr(name.size() + 1));
    }
    if (amp == std::string_view::npos) break;
    query = query.substr(amp + 1);
  }
  return std::nullopt;
}

// The model a reconfigurator request names (?model= or "model" in the
// body; the base when left out), which must have a reconfigurator.
ServedModel& reconfigured_model(ServingContext& ctx, const std::string& name) {
  ServedModel& model = ctx.resolve_model(name);
  if (!model.reconfigurator) {
    throw ApiError(409, "The reconfigurator is off for model '" + model.name() + "' (serve with --reconfig advise|on).",
                   "invalid_request_error", "model", "reconfig_off");
  }
  return model;
}

void get_reconfig(ServingContext& ctx, const std::shared_ptr<Exchange>& exchange) {
  json data = json::array();
  for (const ServedModel& m : ctx.models) {
    if (!m.reconfigurator) continue;
    json j = m.reconfigurator->status();
    j["model"] = m.name();
    data.push_back(std::move(j));
  }
  exchange->reply(200, json_text({{"object", "list"}, {"data", std::move(data)}}));
}

void get_decisions(ServingContext& ctx, const std::shared_ptr<Exchange>& exchange) {
  size_t limit = 100;
  if (const std::optional<std::string> l = query_param(exchange->request(), "limit")) {
    char* end = nullptr;
    const long v = std::strtol(l->c_str(), &end, 10);
    if (l->empty() || *end != '\0' || v < 1 || v > 1000) {
      throw invalid_request("'limit' must be an integer from 1 to 1000.", "limit", "invalid_value");
    }
    limit = size_t(v);
  }
  const ServedModel& model = reconfigured_model(ctx, query_param(exchange->request(), "model").value_or(""));
  json data = json::array();
  for (json& d : model.reconfigurator->decisions(limit)) {
    d["model"] = model.name();
    data.push_back(std::move(d));
  }
  exchange->reply(200, json_text({{"object", "list"}, {"data", std::move(data)}}));
}

void slo_endpoint(ServingContext& ctx, const std::shared_ptr<Exchange>& exchange, bool put) {
  std::string name = query_param(exchange->request(), "model").value_or("");
  json body;
  if (put) {
    body = parse_json_object(exchange->request().body());
    if (body.contains("model")) {
      if (!body["model"].is_string()) throw invalid_request("'model' must be a string.", "model", "invalid_type");
      name = body["model"].get<std::string>();
      body.erase("model");
    }
  }
  ServedModel& model = reconfigured_model(ctx, name);
  if (put) {
    try {
      model.reconfigurator->set_slo(slo_from_json(body));
    } catch (const Error& e) {
      throw invalid_request(e.what(), "", "invalid_slo");
    }
  }
  exchange->reply(200, json_text({{"model", model.name()}, {"slo", slo_json(model.reconfigurator->slo())}}));
}

void delete_pin(ServingContext& ctx, const std::shared_ptr<Exchange>& exchange) {
  ServedModel& model = reconfigured_model(ctx, query_param(exchange->request(), "model").value_or(""));
  model.reconfigurator->unpin();
  exchange->reply(200, json_text({{"model", model.name()}, {"pinned", false}}));
}

}  // namespace

bool is_admin_path(const std::string& path) { return path.compare(0, kAdminPrefix.size(), kAdminPrefix) == 0; }

void handle_admin(ServingContext& ctx, const std::shared_ptr<Exchange>& exchange, const std::string& path) {
  const http::verb method = exchange->request().method();
  auto only = [&](std::initializer_list<http::verb> allowed, const std::string& allow) {
    if (std::find(allowed.begin(), allowed.end(), method) != allowed.end()) return true;
    exchange->reply_error(ApiError(405, "Method not allowed.", "invalid_request_error"), {{"Allow", allow}});
    return false;
  };
  if (path == "/admin/v1/config") {
    if (!only({http::verb::get, http::verb::put}, "GET, PUT")) return;
    return method == http::verb::get ? get_config(ctx, exchange) : put_config(ctx, exchange);
  }
  if (path == "/admin/v1/switches") {
    if (only({http::verb::get}, "GET")) get_switches(ctx, exchange);
    return;
  }
  if (path == "/admin/v1/config/pin") {
    if (only({http::verb::delete_}, "DELETE")) delete_pin(ctx, exchange);
    return;
  }
  if (path == "/admin/v1/slo") {
    if (only({http::verb::get, http::verb::put}, "GET, PUT")) slo_endpoint(ctx, exchange, method == http::verb::put);
    return;
  }
  if (path == "/admin/v1/decisions") {
    if (only({http::verb::get}, "GET")) get_decisions(ctx, exchange);
    return;
  }
  if (path == "/admin/v1/reconfig") {
    if (only({http::verb::get}, "GET")) get_reconfig(ctx, exchange);
    return;
  }
  const auto m = exchange->request().method_string();
  throw ApiError(404, "Invalid URL (" + std::string(m.data(), m.size()) + " " + path + ")", "invalid_request_error", "",
                 "not_found");
}

}  // namespace tidal
