// `tidal serve`: the OpenAI-compatible HTTP server. The engine runs on the
// AsyncEngine's loop thread, HTTP on a small Asio thread pool; SIGINT or
// SIGTERM stops accepting, lets in-flight requests finish for a grace
// period, aborts the rest, and exits 0.
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <cstdio>
#include <mutex>
#include <thread>

#include "cli/commands.h"
#include "cli/model_options.h"
#include "core/error.h"
#include "engine/async_engine.h"
#include "model/chat_template.h"
#include "server/http_server.h"
#include "server/metrics.h"
#include "server/openai_router.h"
#include "server/serving_context.h"

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
  int max_waiting = 256;
  int http_threads = 1;
  int max_body_mb = 8;
  double shutdown_grace_s = 5.0;
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

void run_serve(const ServeOptions& o) {
  // Writes to a client that has gone must fail with EPIPE, not kill us.
  std::signal(SIGPIPE, SIG_IGN);

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

  EngineSetup setup = start_engine(o.model, o.parallel);
  if (!setup.engine) return;  // an MPI worker rank: it served until rank 0 stopped
  const LoadedModel& m = setup.loaded;
  LLMEngine& engine = *setup.engine;
  AsyncEngine async(engine, size_t(o.max_waiting));

  // vLLM's default: the model is served under the name it was given by.
  const std::vector<std::string> names = o.served_model_names.empty() ? std::vector<std::string>{o.model.model}
                                                                      : o.served_model_names;
  ServerMetrics metrics(names.front());
  const int64_t now =
      std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
  ServingContext ctx{async, *m.tokenizer, metrics, names, m.chat_template, engine.max_model_len(), now};
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
      try {
        ioc.run();
      } catch (const std::exception& e) {
        std::fprintf(stderr, "tidal: HTTP thread failed: %s\n", e.what());
      }
      running.done();
    });
  }

  const std::string host = o.host.find(':') != std::string::npos ? "[" + o.host + "]" : o.host;
  std::printf("tidal: serving %s (context %d tokens) at http://%s:%u\n", names.front().c_str(), ctx.max_model_len,
              host.c_str(), unsigned(port));
  std::fflush(stdout);

  {
    std::unique_lock<std::mutex> lock(stop_mutex);
    stop_cv.wait(lock, [&] { return stop_requested; });
  }
  std::fprintf(stderr, "tidal: shutting down\n");
  server.stop_accepting();
  async.shutdown(/*drain=*/true, std::chrono::milliseconds(int64_t(o.shutdown_grace_s * 1000)));
  server.close_connections();
  // Once nothing is pending, run() returns (a later signal stays queued, harmless).
  net::post(ioc, [&] { signals.cancel(); });
  work.reset();
  // Responses still being written get a moment; a client that reads
  // nothing does not hold the exit up.
  if (!running.wait_for(std::chrono::seconds(5))) ioc.stop();
  for (std::thread& t : threads) t.join();
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
  cmd->add_option("--max-waiting", o->max_waiting, "waiting requests beyond which new ones get 429")
      ->check(CLI::Range(1, 1 << 20))
      ->capture_default_str();
  cmd->add_option("--http-threads", o->http_threads, "threads for HTTP I/O (the model has its own)")
      ->check(CLI::Range(1, 64))
      ->capture_default_str();
  cmd->add_option("--max-body-mb", o->max_body_mb, "request bodies larger than this get 413")
      ->check(CLI::Range(1, 1024))
      ->capture_default_str();
  cmd->add_option("--shutdown-grace", o->shutdown_grace_s,
                  "seconds in-flight requests may run after SIGINT/SIGTERM before they are aborted")
      ->check(CLI::Range(0.0, 3600.0))
      ->capture_default_str();
  cmd->callback([o] { run_serve(*o); });
}

}  // namespace tidal
