#include "server/metrics.h"

#include <algorithm>
#include <cstdio>

namespace tidal {

namespace {

// vLLM's bucket boundaries for the same histograms.
const std::vector<double> kTtftBuckets = {0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1,  0.25,  0.5,   0.75,
                                          1.0,   2.5,   5.0,  7.5,  10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0};
const std::vector<double> kItlBuckets = {0.01, 0.025, 0.05, 0.075, 0.1,  0.15, 0.2,  0.3,  0.4, 0.5,
                                         0.75, 1.0,   2.5,  5.0,   7.5, 10.0, 20.0, 40.0, 80.0};
const std::vector<double> kRequestBuckets = {0.3,  0.5,  0.8,  1.0,  1.5,  2.0,   2.5,   5.0,   10.0,   15.0,  20.0,
                                             30.0, 40.0, 50.0, 60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0};

std::string number(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.10g", v);
  return buf;
}

std::string escape_label(std::string_view v) {
  std::string out;
  for (char c : v) {
    if (c == '\\' || c == '"') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  return out;
}

void header(std::string& out, std::string_view name, std::string_view help, std::string_view type) {
  out.append("# HELP ").append(name).append(" ").append(help).append("\n");
  out.append("# TYPE ").append(name).append(" ").append(type).append("\n");
}

void sample(std::string& out, std::string_view name, std::string_view labels, double value) {
  out.append(name).append("{").append(labels).append("} ").append(number(value)).append("\n");
}

}  // namespace

Histogram::Histogram(std::vector<double> upper_bounds)
    : bounds_(std::move(upper_bounds)), counts_(bounds_.size() + 1, 0) {}

void Histogram::observe(double value) {
  const size_t bucket = size_t(std::lower_bound(bounds_.begin(), bounds_.end(), value) - bounds_.begin());
  std::lock_guard<std::mutex> lock(mutex_);
  counts_[bucket]++;
  sum_ += value;
  count_++;
}

void Histogram::render(std::string& out, std::string_view name, std::string_view help, std::string_view labels) const {
  std::vector<uint64_t> counts;
  double sum;
  uint64_t count;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    counts = counts_;
    sum = sum_;
    count = count_;
  }
  header(out, name, help, "histogram");
  const std::string bucket_name = std::string(name) + "_bucket";
  uint64_t cumulative = 0;
  for (size_t i = 0; i <= bounds_.size(); ++i) {
    cumulative += counts[i];
    const std::string le = i < bounds_.size() ? number(bounds_[i]) : "+Inf";
    sample(out, bucket_name, std::string(labels) + ",le=\"" + le + "\"", double(cumulative));
  }
  sample(out, std::string(name) + "_sum", labels, sum);
  sample(out, std::string(name) + "_count", labels, double(count));
}

ServerMetrics::ServerMetrics(std::string model_name)
    : time_to_first_token(kTtftBuckets), inter_token_latency(kItlBuckets), e2e_request_latency(kRequestBuckets),
      request_queue_time(kRequestBuckets), labels_("model_name=\"" + escape_label(model_name) + "\"") {}

std::string ServerMetrics::render(const EngineStats& s) const {
  std::string out;
  // Engine-state metrics come once per data-parallel replica, labelled
  // engine="i" as vLLM v1 does, so sum() over the label gives the total.
  const std::vector<EngineStats> single{s};
  const std::vector<EngineStats>& engines = s.replicas.empty() ? single : s.replicas;
  auto per_engine = [&](std::string_view name, std::string_view help, std::string_view type, auto value) {
    header(out, name, help, type);
    for (size_t i = 0; i < engines.size(); ++i) {
      sample(out, name, labels_ + ",engine=\"" + std::to_string(i) + "\"", double(value(engines[i])));
    }
  };
  auto counter = [&](std::string_view name, std::string_view help, double v) {
    header(out, name, help, "counter");
    sample(out, name, labels_, v);
  };
  per_engine("tidal:num_requests_running", "Number of requests in model execution batches.", "gauge",
             [](const EngineStats& e) { return e.num_running; });
  per_engine("tidal:num_requests_waiting", "Number of requests waiting to be processed.", "gauge",
             [](const EngineStats& e) { return e.num_waiting; });
  per_engine("tidal:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.", "gauge",
             [](const EngineStats& e) { return e.kv_usage; });
  per_engine("tidal:kv_cache_used_blocks", "KV-cache blocks referenced by at least one sequence.", "gauge",
             [](const EngineStats& e) { return e.num_used_blocks; });
  per_engine("tidal:kv_cache_total_blocks", "KV-cache blocks in the pool.", "gauge",
             [](const EngineStats& e) { return e.num_blocks; });
  per_engine("tidal:prefix_cache_queries_total", "Prefix cache queries, in terms of number of queried tokens.",
             "counter", [](const EngineStats& e) { return e.prefix.queries; });
  per_engine("tidal:prefix_cache_hits_total", "Prefix cache hits, in terms of number of cached tokens.", "counter",
             [](const EngineStats& e) { return e.prefix.hits; });
  per_engine("tidal:num_preemptions_total", "Cumulative number of preemptions from the engine.", "counter",
             [](const EngineStats& e) { return e.num_preemptions; });
  counter("tidal:prompt_tokens_total", "Number of prefill tokens processed.", double(prompt_tokens.load()));
  counter("tidal:generation_tokens_total", "Number of generation tokens processed.",
          double(generation_tokens.load()));

  header(out, "tidal:request_success_total", "Count of finished requests by finish reason.", "counter");
  for (FinishReason r : {FinishReason::kStop, FinishReason::kLength, FinishReason::kAbort}) {
    sample(out, "tidal:request_success_total", labels_ + ",finished_reason=\"" + finish_reason_name(r) + "\"",
           double(finished_[size_t(r)].load()));
  }

  time_to_first_token.render(out, "tidal:time_to_first_token_seconds", "Histogram of time to first token in seconds.",
                             labels_);
  inter_token_latency.render(out, "tidal:inter_token_latency_seconds", "Histogram of inter-token latency in seconds.",
                             labels_);
  e2e_request_latency.render(out, "tidal:e2e_request_latency_seconds",
                             "Histogram of end to end request latency in seconds.", labels_);
  request_queue_time.render(out, "tidal:request_queue_time_seconds",
                            "Histogram of time spent in WAITING phase for request.", labels_);
  return out;
}

}  // namespace tidal
