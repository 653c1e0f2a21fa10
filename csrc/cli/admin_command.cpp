// `tidal admin`: the operator's side of the admin API of `tidal serve`
// (/admin/v1/...). `status` shows each served model's configuration, `set`
// switches one live (waiting for the outcome unless --no-wait), `switches`
// lists the switch log. --json prints the server's answer unchanged, for
// scripts. Exit codes: 0 done, 1 a switch failed (the old configuration
// keeps serving), 2 the request itself was refused or never arrived.
#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cli/admin_client.h"
#include "cli/commands.h"
#include "core/error.h"

namespace tidal {

namespace {

using json = nlohmann::json;

struct AdminOptions {
  std::string url = "http://127.0.0.1:8000";
  std::string admin_key;
  bool json = false;
  std::vector<std::string> pairs;  // of `set`
  bool no_wait = false;
};

constexpr const char* kConfigPath = "/admin/v1/config";
constexpr const char* kSwitchesPath = "/admin/v1/switches";
constexpr const char* kKnobs[] = {"max_num_seqs", "max_num_batched_tokens", "target_tpot_ms"};

[[noreturn]] void reject(const std::string& message) { throw Error(ErrorCode::kInvalidArgument, message); }

// The message of an OpenAI-shaped error body, else the body's first line
// (something other than tidal answered).
std::string error_message(const AdminResponse& r) {
  const json j = json::parse(r.body, nullptr, false);
  if (j.is_object() && j.contains("error") && j["error"].is_object() && j["error"].contains("message") &&
      j["error"]["message"].is_string()) {
    return j["error"]["message"].get<std::string>();
  }
  const std::string first_line = r.body.substr(0, r.body.find('\n'));
  return first_line.empty() ? "no error message" : first_line;
}

// Sends the request; a refusal (4xx/5xx) becomes the one-line error main prints.
// Returns the body as text, for --json, and parsed.
std::pair<std::string, json> call(const AdminOptions& o, std::string_view method, const std::string& target,
                                  const std::string& body = {}) {
  const AdminResponse r = AdminClient(parse_admin_url(o.url), o.admin_key).request(method, target, body);
  if (r.status < 200 || r.status >= 300) reject(error_message(r) + " (HTTP " + std::to_string(r.status) + ")");
  json j = json::parse(r.body, nullptr, false);
  if (j.is_discarded()) {
    reject("the server at " + o.url + " did not answer JSON (HTTP " + std::to_string(r.status) + ")");
  }
  return {r.body, std::move(j)};
}

std::string number_text(double x) {
  char text[32];
  std::snprintf(text, sizeof text, "%g", x);
  return text;
}

std::string knob_text(const json& config, const char* knob) {
  const json& value = config.at(knob);
  if (value.is_number_integer()) return std::string(knob) + " " + std::to_string(value.get<int64_t>());
  // target_tpot_ms: 0 means none, as in `tidal serve --target-tpot-ms`.
  return std::string(knob) + " " + (value.get<double>() == 0 ? "off" : number_text(value.get<double>()));
}

// "int8 tp2 pp1 dp1", naming the communicator only when it is not the default.
std::string layout_text(const json& config) {
  std::string text = config.at("variant").get<std::string>();
  for (const char* axis : {"tp", "pp", "dp"}) {
    text += " " + std::string(axis) + std::to_string(config.at(axis).get<int>());
  }
  const std::string comm = config.at("comm").get<std::string>();
  return comm == "local" ? text : text + " " + comm;
}

// One side of "from -> to": the layout plus the knobs that differ from the
// other side, so a knob-only switch still shows what changed.
std::string side_text(const json& config, const json& other) {
  std::string text = layout_text(config);
  for (const char* knob : kKnobs) {
    if (config.at(knob) != other.at(knob)) text += " " + knob_text(config, knob);
  }
  return text;
}

std::string change_text(const json& record) {
  return side_text(record.at("from"), record.at("to")) + " -> " + side_text(record.at("to"), record.at("from"));
}

// "switch 3 of stories: done (variant+layout) base tp1 pp1 dp1 -> int8 tp2 pp1 dp1: prepared ..."
std::string switch_line(const json& r) {
  const std::string outcome = r.at("outcome").get<std::string>();
  std::string line = "switch " + std::to_string(r.at("id").get<uint64_t>()) + " of " +
                     r.at("model").get<std::string>() + ": " + outcome;
  if (outcome == "unchanged") return line + ", already " + layout_text(r.at("to"));
  line += " (" + r.at("kind").get<std::string>() + ") " + change_text(r);
  if (outcome == "failed") {
    return line + ": " + (r.at("error").is_string() ? r["error"].get<std::string>() : "no reason given");
  }
  if (outcome != "done") return line;
  char stats[160];
  std::snprintf(stats, sizeof stats, ": prepared %.3f s, paused %.1f ms, %llu requests moved, %lld tokens recomputed",
                r.at("prepare_seconds").get<double>(), r.at("pause_seconds").get<double>() * 1e3,
                (unsigned long long)r.at("requests_moved").get<uint64_t>(),
                (long long)r.at("tokens_recomputed").get<int64_t>());
  line += stats;
  return r.at("freed_old_first").get<bool>() ? line + " (old configuration freed first)" : line;
}

void print_status(const json& list) {
  for (const json& m : list.at("data")) {
    const json& config = m.at("config");
    std::string knobs;
    for (const char* knob : kKnobs) knobs += (knobs.empty() ? "" : ", ") + knob_text(config, knob);
    std::string last = "none";
    if (const json& r = m.at("last_switch"); !r.is_null()) {
      last = std::to_string(r.at("id").get<uint64_t>()) + " " + r.at("outcome").get<std::string>() + " (" +
             r.at("kind").get<std::string>() + ", " + r.at("origin").get<std::string>() + ")";
    }
    char memory[96];
    std::snprintf(memory, sizeof memory, "%.1f MiB resident, max_model_len %d", m.at("resident_mib").get<double>(),
                  m.at("max_model_len").get<int>());
    std::printf("%s: %s %s; %s; storage %s, %s; last switch %s\n", m.at("model").get<std::string>().c_str(),
                m.at("state").get<std::string>().c_str(), layout_text(config).c_str(), knobs.c_str(),
                m.at("storage").get<std::string>().c_str(), memory, last.c_str());
  }
}

// Columns padded to their widest cell; numeric columns (from `first_numeric` on) aligned right.
void print_table(const std::vector<std::vector<std::string>>& rows, size_t first_numeric) {
  std::vector<size_t> width(rows.front().size(), 0);
  for (const auto& row : rows) {
    for (size_t c = 0; c < row.size(); ++c) width[c] = std::max(width[c], row[c].size());
  }
  for (const auto& row : rows) {
    std::string line;
    for (size_t c = 0; c < row.size(); ++c) {
      const std::string pad(width[c] - row[c].size(), ' ');
      line += (c ? "  " : "") + (c >= first_numeric ? pad + row[c] : row[c] + (c + 1 < row.size() ? pad : ""));
    }
    std::printf("%s\n", line.c_str());
  }
}

void print_switches(const json& list) {
  if (list.at("data").empty()) {
    std::printf("no switches yet\n");
    return;
  }
  std::vector<std::vector<std::string>> rows = {
      {"id", "model", "origin", "kind", "from -> to", "outcome", "prepare s", "pause ms", "moved", "recomputed"}};
  for (const json& r : list.at("data")) {
    char prepare[32], pause[32];
    std::snprintf(prepare, sizeof prepare, "%.3f", r.at("prepare_seconds").get<double>());
    std::snprintf(pause, sizeof pause, "%.1f", r.at("pause_seconds").get<double>() * 1e3);
    rows.push_back({std::to_string(r.at("id").get<uint64_t>()), r.at("model").get<std::string>(),
                    r.at("origin").get<std::string>(), r.at("kind").get<std::string>(), change_text(r),
                    r.at("outcome").get<std::string>(), prepare, pause,
                    std::to_string(r.at("requests_moved").get<uint64_t>()),
                    std::to_string(r.at("tokens_recomputed").get<int64_t>())});
  }
  print_table(rows, 6);
}

template <typename T>
T parse_value(const std::string& key, const std::string& value, const char* what) {
  T x{};
  const auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), x);
  if (ec != std::errc() || end != value.data() + value.size()) {
    reject("set: " + key + " must be " + what + " (got '" + value + "')");
  }
  return x;
}

// `set`'s key=value pairs as the PUT body. The server checks the ranges;
// this only catches what would not even make a well-typed request.
json switch_body(const std::vector<std::string>& pairs) {
  json body = json::object();
  for (const std::string& pair : pairs) {
    const size_t eq = pair.find('=');
    if (eq == std::string::npos) reject("set: expected key=value, got '" + pair + "'");
    const std::string key = pair.substr(0, eq), value = pair.substr(eq + 1);
    if (body.contains(key)) reject("set: " + key + " is given twice");
    if (value.empty()) reject("set: " + key + " needs a value");
    if (key == "model" || key == "variant") {
      body[key] = value;
    } else if (key == "tp" || key == "pp" || key == "dp" || key == "max_num_seqs" || key == "max_num_batched_tokens") {
      body[key] = parse_value<int64_t>(key, value, "an integer");
    } else if (key == "target_tpot_ms") {
      const double x = parse_value<double>(key, value, "a number");
      if (!std::isfinite(x)) reject("set: target_tpot_ms must be a finite number (got '" + value + "')");
      body[key] = x;
    } else {
      reject("set: unknown key '" + key +
             "' (known: model, variant, tp, pp, dp, max_num_seqs, max_num_batched_tokens, target_tpot_ms)");
    }
  }
  if (!body.contains("model")) reject("set: model=NAME is required");
  return body;
}

void run_set(const AdminOptions& o) {
  const json body = switch_body(o.pairs);
  const auto [text, answer] = call(o, "PUT", o.no_wait ? kConfigPath : std::string(kConfigPath) + "?wait=true",
                                   body.dump());
  if (o.json) {
    std::printf("%s\n", text.c_str());
  } else if (o.no_wait) {
    std::printf("switch %llu of %s: accepted\n", (unsigned long long)answer.at("id").get<uint64_t>(),
                answer.at("model").get<std::string>().c_str());
  } else {
    std::printf("%s\n", switch_line(answer).c_str());
  }
  // Reported above; main turns this into the exit code alone.
  if (!o.no_wait && answer.at("outcome") == "failed") throw CLI::RuntimeError(1);
}

void run_get(const AdminOptions& o, const std::string& path, void (*print)(const json&)) {
  const auto [text, answer] = call(o, "GET", path);
  if (o.json) {
    std::printf("%s\n", text.c_str());
  } else {
    print(answer);
  }
}

}  // namespace

void register_admin_command(CLI::App& app) {
  auto o = std::make_shared<AdminOptions>();
  CLI::App* cmd = app.add_subcommand("admin", "operate a running `tidal serve` through its admin API");
  cmd->require_subcommand(1);
  cmd->fallthrough();  // the options below may also follow the action
  cmd->add_option("--url", o->url, "the server, http://host:port (a trailing path such as /v1 is ignored)")
      ->capture_default_str();
  cmd->add_option("--admin-key", o->admin_key, "the server's --admin-key")->envname("TIDAL_ADMIN_KEY");
  cmd->add_flag("--json", o->json, "print the server's JSON answer as is");

  cmd->add_subcommand("status", "each served model's configuration, state and last switch")->callback([o] {
    run_get(*o, kConfigPath, print_status);
  });
  CLI::App* set =
      cmd->add_subcommand("set", "switch a model's configuration live, e.g. set model=NAME variant=int8 tp=2");
  set->add_option("pairs", o->pairs,
                  "key=value: model (required), variant, tp, pp, dp, max_num_seqs, max_num_batched_tokens, "
                  "target_tpot_ms (0 = none)")
      ->required();
  set->add_flag("--no-wait", o->no_wait, "return once the switch is accepted and print its id");
  set->callback([o] { run_set(*o); });
  cmd->add_subcommand("switches", "the switch log of every model, oldest first")->callback([o] {
    run_get(*o, kSwitchesPath, print_switches);
  });
}

}  // namespace tidal
