// Server metrics in Prometheus text format, named after vLLM's (with the
// `tidal:` prefix) so that dashboards and benchmark tools written for vLLM
// read them unchanged. Gauges and engine counters come from an EngineStats
// snapshot at scrape time; latencies and token counts are observed per
// request by the serving code, from any thread. A server with several
// engines (`--variants`) has one ServerMetrics per engine, labelled with
// the name that engine is served under.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "engine/engine.h"
#include "engine/request.h"
#include "reconfig/served_model.h"

namespace tidal {

class Reconfigurator;

class Histogram {
 public:
  explicit Histogram(std::vector<double> upper_bounds);
  void observe(double value);
  // Appends the _bucket/_sum/_count lines (not the family's HELP/TYPE
  // header); `labels` is `k="v"` text (no braces).
  void render(std::string& out, std::string_view name, std::string_view labels) const;

 private:
  std::vector<double> bounds_;
  mutable std::mutex mutex_;
  std::vector<uint64_t> counts_;  // per bucket, not cumulative; the last one is +Inf
  double sum_ = 0.0;
  uint64_t count_ = 0;
};

class ServerMetrics {
 public:
  explicit ServerMetrics(std::string model_name);

  Histogram time_to_first_token;
  Histogram inter_token_latency;
  Histogram e2e_request_latency;
  Histogram request_queue_time;
  std::atomic<uint64_t> prompt_tokens{0};
  std::atomic<uint64_t> generation_tokens{0};
  void count_finished(FinishReason reason) { finished_[size_t(reason)]++; }

  // The label set of every sample of this engine: model_name="...".
  const std::string& labels() const { return labels_; }
  uint64_t finished(FinishReason reason) const { return finished_[size_t(reason)].load(); }

 private:
  std::string labels_;
  std::array<std::atomic<uint64_t>, 3> finished_{};  // by FinishReason
};

// One engine's part of a scrape: its request-level metrics and a snapshot
// of its engine's stats.
struct EngineMetrics {
  const ServerMetrics& metrics;
  EngineStats stats;
  const ServedModelRuntime* runtime = nullptr;  // its configuration and switches (none: not reported)
  const Reconfigurator* reconfigurator = nullptr;  // decisions and shadow monitoring (none: not reported)
};

// The /metrics text for every engine: each metric family's HELP and TYPE
// once (Prometheus rejects a family whose header repeats), then each
// engine's samples, labelled with its model_name; engine-state families
// also with engine="i", one sample per data-parallel replica.
std::string render_metrics(const std::vector<EngineMetrics>& engines);

}  // namespace tidal
