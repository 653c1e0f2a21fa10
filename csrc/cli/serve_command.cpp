// `tidal serve`: the OpenAI-compatible HTTP server. Each served model is a
// ServedModelRuntime (reconfig/): its engine runs on an AsyncEngine loop
// thread, HTTP on a small Asio thread pool, and the admin API can switch
// its configuration live. SIGINT or SIGTERM stops accepting, lets in-flight
// requests finish for a grace period, aborts the rest, and exits 0. With
// --variants there is one runtime (and loop thread) per variant beside the
// base model's; requests pick one by their "model" field.
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/thread_pool.hpp>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <cstdio>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "cli/commands.h"
#include "cli/kv_cache_report.h"
#include "cli/model_options.h"
#include "cli/reconfig_options.h"
#include "core/error.h"
#include "engine/async_engine.h"
#include "engine/pool_turns.h"
#include "model/chat_template.h"
#include "reconfig/mpi_worker.h"
#include "reconfig/reconfigurator.h"
#include "reconfig/served_model.h"
#include "server/http_server.h"
#include "server/io_thread.h"
#include "server/json_text.h"
#include "server/metrics.h"
#include "server/openai_router.h"
#include "server/serving_context.h"
#include "server/variant_catalog.h"

namespace tidal {

namespace {

namespace net = boost::asio;

struct ServeOptions {
  ModelOptions model;
  ParallelConfig parallel;
  std::string host = "127.0.0.1";
  int port = 8000;
  std::string api_key;
  std::vector<std::string> served_model_names;
  std::string variants;         // --variants: comma-separated variant names
  std::string variant_profile;  // --variant-profile: `tidal eval --profile-out` file
  int max_waiting = 256;
  int http_threads = 1;
  int request_threads = 2;      // --request-threads: parse and tokenize request bodies
  int max_body_mb = 8;
  double shutdown_grace_s = 5.0;
  std::string admin_key;        // --admin-key: Bearer key of the admin API (empty: disabled)
  int memory_limit_mb = 0;      // 0: no limit on what configurations hold beyond the base model
  std::string variant = kBaseVariant;  // --variant: what the model is served as at start
  ReconfigFlags reconfig;
};

// Counts running threads so that shutdown can wait for them with a deadline.
class ThreadCount {
 public:
  void add() {
    std::lock_guard<std::mutex> lock(mutex_);
    ++running_;
  }
  void done() {
    std::lock_guard<std::mutex> lock(mutex_);
    if (--running_ == 0) cv_.notify_all();
  }
  bool wait_for(std::chrono::milliseconds timeout) {
    std::unique_lock<std::mutex> lock(mutex_);
    return cv_.wait_for(lock, timeout, [this] { return running_ == 0; });
  }

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  int running_ = 0;
};

// What `serve` holds: the MPI job (if any), the loaded files and shared
// pool, then one runtime per served model, the base's first. Members are
// destroyed runtimes first, the MPI job last.
struct ServedRuntimes {
  ModelSetup model;
  std::vector<std::unique_ptr<ServedModelRuntime>> models;  // empty on an MPI worker process
  std::unique_ptr<Reconfigurator> reconfigurator;           // of the base model, with --reconfig advise|on
};

// Loads the model and builds the base's configuration (any --tp/--pp/--dp),
// then each variant's (one device).
ServedRuntimes start_runtimes(const ServeOptions& o, const std::vector<VariantSpec>& variants,
                              const std::vector<std::vector<std::string>>& names) {
  ServedRuntimes s;
  s.model = setup_model(o.model, o.parallel);
  if (s.model.worker_done) return s;
  const ModelSource source = s.model.source(o.model.threads);
  ServedModelRuntime::Options options;
  options.max_waiting = size_t(o.max_waiting);
  options.memory_limit_bytes = size_t(o.memory_limit_mb) << 20;
  options.name = names.front().front();
  s.models.push_back(
      std::make_unique<ServedModelRuntime>(source, flag_config(o.model, o.variant, o.parallel), options));
  for (size_t i = 0; i < variants.size(); ++i) {
    const auto start = std::chrono::steady_clock::now();
    options.name = names[i + 1].front();
    s.models.push_back(
        std::make_unique<ServedModelRuntime>(source, flag_config(o.model, variants[i].name, ParallelConfig{}), options));
    std::fprintf(stderr, "tidal: variant %s: %.1f MiB of weights, derived in %.2f s\n", variants[i].name.c_str(),
                 double(s.models.back()->weight_bytes()) / double(1 << 20),
                 std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  if (o.reconfig.mode != "off") {
    s.reconfigurator = std::make_unique<Reconfigurator>(*s.models.front(), *s.model.variants, *s.model.loaded.pool,
                                                        *s.model.turns, reconfigurator_options(o.reconfig, o.model.model));
  }
  return s;
}

// The GET /v1/variants body: the base, then each variant.
std::string catalog_text(const ServedRuntimes& s, const std::vector<VariantSpec>& variants, const std::string& base_name,
                         const nlohmann::json& profiles) {
  std::vector<CatalogEntry> entries = {base_catalog_entry(base_name, *s.model.loaded.model)};
  for (size_t i = 0; i < variants.size(); ++i) {
    const ServedModelRuntime& v = *s.models[i + 1];
    entries.push_back(
        variant_catalog_entry(base_name, variants[i], v.storage(), v.weight_bytes(), entries.front().storage));
  }
  return json_text(variant_catalog(base_name, entries, profiles));
}

void run_serve(const ServeOptions& o) {
  // Writes to a client that has gone must fail with EPIPE, not kill us.
  std::signal(SIGPIPE, SIG_IGN);

  // Mistakes in the variant options are reported before the model loads.
  const std::vector<VariantSpec> variants =
      o.variants.empty() ? std::vector<VariantSpec>{} : parse_variant_list(o.variants);
  if (!variants.empty() && !o.parallel.single_device()) {
    throw Error(ErrorCode::kInvalidArgument,
                "--variants serves every model on one device: it cannot be combined with --tp, --pp, --dp or --comm");
  }
  // vLLM's default: the model is served under the name it was given by.
  const std::vector<std::vector<std::string>> names = served_model_names(
      o.served_model_names.empty() ? std::vector<std::string>{o.model.model} : o.served_model_names, variants);
  const std::string profile_path =
      o.variant_profile.empty() ? default_variant_profile_path(o.model.model) : o.variant_profile;
  const nlohmann::json profiles =
      profile_path.empty() ? nlohmann::json(nullptr) : read_variant_profiles(profile_path, o.model.model);

  // Signals are caught from the start (a SIGTERM while the model loads stops
  // the server as soon as it is up) to the very end (one during teardown
  // does not kill the process half-way). A second signal exits at once.
  net::io_context ioc(o.http_threads);
  net::signal_set signals(ioc, SIGINT, SIGTERM);
  std::mutex stop_mutex;
  std::condition_variable stop_cv;
  bool stop_requested = false;
  signals.async_wait([&](const boost::system::error_code& ec, int) {
    if (ec) return;
    {
      std::lock_guard<std::mutex> lock(stop_mutex);
      stop_requested = true;
      stop_cv.notify_all();
    }
    signals.async_wait([](const boost::system::error_code& ec, int) {
      if (ec) return;
      std::fprintf(stderr, "tidal: second signal: exiting without waiting for requests\n");
      std::_Exit(1);
    });
  });

  ServedRuntimes served = start_runtimes(o, variants, names);
  if (served.models.empty()) return;  // an MPI worker process: the driver has quit
  const LoadedModel& m = served.model.loaded;
  const std::string& base_name = names.front().front();

  const int64_t now =
      std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
  // Stopped and joined before the context it works on goes (below).
  net::thread_pool request_pool(size_t(o.request_threads));
  ServingContext ctx{*m.tokenizer, {}, m.chat_template, now, catalog_text(served, variants, base_name, profiles),
                     o.admin_key, request_pool};
  std::vector<std::unique_ptr<ServerMetrics>> metrics;
  for (size_t i = 0; i < served.models.size(); ++i) {
    ServedModelRuntime& runtime = *served.models[i];
    metrics.push_back(std::make_unique<ServerMetrics>(names[i].front()));
    ctx.models.push_back({names[i], runtime, runtime.engine(), *metrics[i], runtime.max_model_len(), i > 0,
                          i == 0 ? served.reconfigurator.get() : nullptr});
  }
  try {
    apply_chat_template(ctx.chat_template, {{"user", "hi"}}, true);
  } catch (const Error& e) {
    std::fprintf(stderr, "tidal: warning: chat completions will be refused: %s\n", e.what());
  }

  HttpLimits limits;
  limits.max_body_bytes = size_t(o.max_body_mb) << 20;
  HttpServer server(ioc, OpenAiRouter(ctx, o.api_key), limits);
  const uint16_t port = server.listen(o.host, uint16_t(o.port));

  // Keeps run() going while the engine drains, even if no socket is busy.
  auto work = net::make_work_guard(ioc);
  ThreadCount running;
  std::vector<std::thread> threads;
  for (int i = 0; i < o.http_threads; ++i) {
    running.add();
    threads.emplace_back([&] {
      run_io_thread(ioc);
      running.done();
    });
  }

  std::printf("tidal: %s\n", kv_cache_report(ctx.base().engine.stats()).c_str());
  if (o.admin_key.empty()) std::fprintf(stderr, "tidal: admin API disabled (no --admin-key)\n");
  const std::string host = o.host.find(':') != std::string::npos ? "[" + o.host + "]" : o.host;
  std::string served_names = base_name;
  for (size_t i = 1; i < names.size(); ++i) served_names += ", " + names[i].front();
  std::printf("tidal: serving %s (context %d tokens) at http://%s:%u\n", served_names.c_str(),
              ctx.base().max_model_len, host.c_str(), unsigned(port));
  std::fflush(stdout);

  {
    std::unique_lock<std::mutex> lock(stop_mutex);
    stop_cv.wait(lock, [&] { return stop_requested; });
  }
  std::fprintf(stderr, "tidal: shutting down\n");
  server.stop_accepting();
  // No switch may start while the models drain (the admin API may still
  // read its state).
  if (served.reconfigurator) served.reconfigurator->stop();
  // Every engine stops accepting at once and they drain side by side, all
  // within the same grace period.
  const std::chrono::milliseconds grace(int64_t(o.shutdown_grace_s * 1000));
  std::vector<std::thread> draining;
  for (auto& model : served.models) {
    draining.emplace_back([&model, grace] { model->shutdown(/*drain=*/true, grace); });
  }
  for (std::thread& t : draining) t.join();
  server.close_connections();
  // Once nothing is pending, run() returns (a later signal stays queued, harmless).
  net::post(ioc, [&] { signals.cancel(); });
  work.reset();
  // Responses still being written get a moment; a client that reads
  // nothing does not hold the exit up.
  if (!running.wait_for(std::chrono::seconds(5))) ioc.stop();
  for (std::thread& t : threads) t.join();
  // Bodies still waiting to be prepared are dropped with their connections;
  // one being prepared is finished first (it reads the context).
  request_pool.stop();
  request_pool.join();
}

}  // namespace

void register_serve_command(CLI::App& app) {
  auto o = std::make_shared<ServeOptions>();
  CLI::App* cmd = app.add_subcommand("serve", "OpenAI-compatible HTTP server");
  add_model_options(*cmd, o->model);
  add_parallel_options(*cmd, o->parallel);
  cmd->add_option("--host", o->host, "address to listen on")->capture_default_str();
  cmd->add_option("--port", o->port, "TCP port (0: any free port; the URL is printed)")
      ->check(CLI::Range(0, 65535))
      ->capture_default_str();
  cmd->add_option("--api-key", o->api_key, "require 'Authorization: Bearer KEY' on every endpoint")
      ->envname("TIDAL_API_KEY");
  cmd->add_option("--served-model-name", o->served_model_names,
                  "model name(s) clients use (default: the --model argument); responses report the first");
  cmd->add_option("--variants", o->variants,
                  "also serve these variants of the model, derived from it at start-up (comma-separated: f32, f16, "
                  "bf16, int8, int8-rot, int8-g32, int8-g32-rot, int4-g32, int4-g64, int4-g128, w8a16-g32, w4a16-g32, w4a16-g128), each as '<served name>:<variant>' with an engine of "
                  "its own (its own KV pool of --kv-cache-mb and --max-waiting queue); all engines share the "
                  "tokenizer and the --threads pool, taking turns step by step. One device only (no --tp/--pp/--dp)");
  cmd->add_option("--variant-profile", o->variant_profile,
                  "`tidal eval --profile-out` file whose measurements GET /v1/variants shows (default: "
                  "<model>.variants.json when it exists)");
  cmd->add_option("--max-waiting", o->max_waiting, "waiting requests beyond which new ones get 429")
      ->check(CLI::Range(1, 1 << 20))
      ->capture_default_str();
  cmd->add_option("--http-threads", o->http_threads, "threads for HTTP I/O (the model has its own)")
      ->check(CLI::Range(1, 64))
      ->capture_default_str();
  cmd->add_option("--request-threads", o->request_threads,
                  "threads that parse, template and tokenize request bodies, off the HTTP threads (more requests "
                  "than threads wait their turn)")
      ->check(CLI::Range(1, 64))
      ->capture_default_str();
  cmd->add_option("--max-body-mb", o->max_body_mb, "request bodies larger than this get 413")
      ->check(CLI::Range(1, 1024))
      ->capture_default_str();
  cmd->add_option("--admin-key", o->admin_key,
                  "enable the admin API (/admin/v1/...: live switches of variant, layout and batch knobs) behind "
                  "'Authorization: Bearer KEY'; --api-key does not grant it")
      ->envname("TIDAL_ADMIN_KEY");
  cmd->add_option("--memory-limit-mb", o->memory_limit_mb,
                  "memory the served configurations may hold beyond the loaded model (derived weights and KV pools; "
                  "0 = no limit). A switch that cannot hold the old and the new configuration at once frees the old "
                  "one first, and its pause includes preparing the new one")
      ->check(CLI::Range(0, 1 << 30))
      ->capture_default_str();
  cmd->add_option("--variant", o->variant,
                  "serve the model as this variant of it from the start (derived at start-up; 'base': as loaded)")
      ->capture_default_str();
  add_reconfig_options(*cmd, o->reconfig);
  cmd->add_option("--shutdown-grace", o->shutdown_grace_s,
                  "seconds in-flight requests may run after SIGINT/SIGTERM before they are aborted")
      ->check(CLI::Range(0.0, 3600.0))
      ->capture_default_str();
  cmd->callback([o] { run_serve(*o); });
}

}  // namespace tidal
