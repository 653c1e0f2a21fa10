#include "runner.h"

#include <boost/asio/redirect_error.hpp>
#include <thread>

#include "http_client.h"

namespace tidal::bench {

namespace {

class Run {
 public:
  Run(const std::vector<SampleRequest>& samples, const std::vector<double>& offsets_s, const RunOptions& o,
      Progress& progress)
      : offsets_(offsets_s), o_(o), progress_(progress), endpoints_(resolve(io_, o.url)), slot_freed_(io_) {
    path_ = o.url.api_path(o.body.endpoint == Endpoint::chat ? "/chat/completions" : "/completions");
    bodies_.reserve(samples.size());
    records_.resize(samples.size());
    for (size_t i = 0; i < samples.size(); ++i) {
      bodies_.push_back(request_body(samples[i], o.body));
      records_[i].index = i;
      records_[i].prompt_len = samples[i].prompt_len;
      records_[i].expected_output_len = samples[i].output_len;
    }
  }

  RunResult run() {
    start_ = Clock::now();
    const int64_t start_unix_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                                      std::chrono::system_clock::now().time_since_epoch())
                                      .count();
    asio::co_spawn(io_, dispatch(), asio::detached);
    io_.run();
    return RunResult{std::move(records_), std::chrono::duration<double>(Clock::now() - start_).count(),
                     start_unix_ms};
  }

 private:
  awaitable<void> dispatch() {
    asio::steady_timer arrival(io_);
    for (size_t i = 0; i < records_.size(); ++i) {
      const auto offset = std::chrono::duration<double>(offsets_[i]);
      arrival.expires_at(start_ + std::chrono::duration_cast<Clock::duration>(offset));
      co_await arrival.async_wait(use_awaitable);
      while (o_.max_concurrency && in_flight_ >= *o_.max_concurrency) {
        boost::system::error_code ec;  // cancelled when a request finishes
        slot_freed_.expires_at(Clock::time_point::max());
        co_await slot_freed_.async_wait(asio::redirect_error(use_awaitable, ec));
      }
      ++in_flight_;
      asio::co_spawn(io_, send(i), asio::detached);
    }
  }

  awaitable<void> send(size_t i) {
    RequestRecord& rec = records_[i];
    try {
      co_await stream_completion(o_.url, endpoints_, path_, bodies_[i], o_.body.endpoint, start_, o_.idle_timeout, rec);
    } catch (const std::exception& e) {
      rec.error = e.what();
      rec.success = false;
    }
    --in_flight_;
    slot_freed_.cancel();
    progress_.on_done(rec);
  }

  const std::vector<double>& offsets_;
  const RunOptions& o_;
  Progress& progress_;
  asio::io_context io_;
  Endpoints endpoints_;
  asio::steady_timer slot_freed_;
  std::string path_;
  std::vector<std::string> bodies_;
  std::vector<RequestRecord> records_;
  Clock::time_point start_;
  int in_flight_ = 0;
};

}  // namespace

RunResult run_benchmark(const std::vector<SampleRequest>& samples, const std::vector<double>& offsets_s,
                        const RunOptions& o, Progress& progress) {
  return Run(samples, offsets_s, o, progress).run();
}

// Only "not up yet" is worth waiting for: a refused connection, or 503
// while the model loads. Anything else (a wrong model name, a bad request)
// will not fix itself.
RequestRecord wait_until_ready(const SampleRequest& sample, const RunOptions& o, std::chrono::seconds timeout) {
  const auto deadline = Clock::now() + timeout;
  Progress silent(1, false);
  for (;;) {
    RunResult r = run_benchmark({sample}, {0.0}, o, silent);
    const std::string& error = r.records[0].error;
    const bool starting = error.rfind("connect: ", 0) == 0 || error.rfind("HTTP 503", 0) == 0;
    if (r.records[0].success || !starting || Clock::now() >= deadline) return r.records[0];
    std::this_thread::sleep_for(std::chrono::seconds(1));
  }
}

}  // namespace tidal::bench
