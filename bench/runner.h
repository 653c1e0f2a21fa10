// Drives a benchmark: sends each request at its arrival offset from one
// thread (Asio coroutines, one connection per request), holds requests back
// while --max-concurrency are in flight (FIFO, as vLLM's semaphore), and
// collects every request's record. Bodies are built before the clock starts
// so that building them never delays a send.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <vector>

#include "dataset.h"
#include "progress.h"
#include "request_body.h"
#include "request_record.h"
#include "server_url.h"

namespace tidal::bench {

struct RunOptions {
  ServerUrl url;
  RequestBodyOptions body;
  std::optional<int> max_concurrency;
  std::chrono::seconds idle_timeout{600};  // a request making no progress this long fails
};

struct RunResult {
  std::vector<RequestRecord> records;
  double duration_s = 0;  // first send scheduled -> last request finished
  int64_t start_unix_ms = 0;  // wall-clock time of the start (records' start_s count from it)
};

RunResult run_benchmark(const std::vector<SampleRequest>& samples, const std::vector<double>& offsets_s,
                        const RunOptions& o, Progress& progress);

// vLLM's initial test request: sends `sample`, retrying while the server is
// not up yet, until it succeeds or `timeout` passes; returns the last attempt.
RequestRecord wait_until_ready(const SampleRequest& sample, const RunOptions& o, std::chrono::seconds timeout);

}  // namespace tidal::bench
