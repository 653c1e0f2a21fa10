#include "server/metrics.h"

#include <algorithm>
#include <cstdio>
#include <span>

#include "reconfig/reconfigurator.h"

namespace tidal {

namespace {

// vLLM's bucket boundaries for the same histograms.
const std::vector<double> kTtftBuckets = {0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1,  0.25,  0.5,   0.75,
                                          1.0,   2.5,   5.0,  7.5,  10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0};
const std::vector<double> kItlBuckets = {0.01, 0.025, 0.05, 0.075, 0.1,  0.15, 0.2,  0.3,  0.4, 0.5,
                                         0.75, 1.0,   2.5,  5.0,   7.5, 10.0, 20.0, 40.0, 80.0};
const std::vector<double> kRequestBuckets = {0.3,  0.5,  0.8,  1.0,  1.5,  2.0,   2.5,   5.0,   10.0,   15.0,  20.0,
                                             30.0, 40.0, 50.0, 60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0};

const std::vector<double> kPauseBuckets = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                           0.25,  0.5,    1.0,   2.5,  5.0,   10.0, 30.0};

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

void Histogram::render(std::string& out, std::string_view name, std::string_view labels) const {
  std::vector<uint64_t> counts;
  double sum;
  uint64_t count;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    counts = counts_;
    sum = sum_;
    count = count_;
  }
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

std::string render_metrics(const std::vector<EngineMetrics>& engines) {
  std::string out;
  // Engine-state metrics come once per data-parallel replica of each model,
  // labelled engine="i" as vLLM v1 does, so sum() over the label gives the
  // model's total.
  auto per_replica = [&](std::string_view name, std::string_view help, std::string_view type, auto&& value) {
    header(out, name, help, type);
    for (const EngineMetrics& e : engines) {
      const std::span<const EngineStats> replicas =
          e.stats.replicas.empty() ? std::span<const EngineStats>(&e.stats, 1) : std::span(e.stats.replicas);
      for (size_t i = 0; i < replicas.size(); ++i) {
        sample(out, name, e.metrics.labels() + ",engine=\"" + std::to_string(i) + "\"", double(value(replicas[i])));
      }
    }
  };
  // Request-level metrics (and the pool's shape, the same on every replica)
  // come once per model.
  auto per_model = [&](std::string_view name, std::string_view help, std::string_view type, auto&& value) {
    header(out, name, help, type);
    for (const EngineMetrics& e : engines) sample(out, name, e.metrics.labels(), double(value(e)));
  };
  per_replica("tidal:replica_up",
              "1 while the data-parallel replica serves, 0 once its executor failed (its requests failed, new ones "
              "go to the others) or once it is gone after a switch.",
              "gauge", [](const EngineStats& s) { return s.replicas_up; });
  per_replica("tidal:num_requests_running", "Number of requests in model execution batches.", "gauge",
              [](const EngineStats& s) { return s.num_running; });
  per_replica("tidal:num_requests_waiting", "Number of requests waiting to be processed.", "gauge",
              [](const EngineStats& s) { return s.num_waiting; });
  per_replica("tidal:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.", "gauge",
              [](const EngineStats& s) { return s.kv_usage; });
  per_replica("tidal:kv_cache_used_blocks", "KV-cache blocks referenced by at least one sequence.", "gauge",
              [](const EngineStats& s) { return s.num_used_blocks; });
  per_replica("tidal:kv_cache_total_blocks", "KV-cache blocks in the pool.", "gauge",
              [](const EngineStats& s) { return s.num_blocks; });
  per_model("tidal:kv_cache_bytes_per_token", "Bytes of K and V one token takes in the KV cache (per device).",
            "gauge", [](const EngineMetrics& e) { return e.stats.kv_bytes_per_token; });
  per_replica("tidal:prefix_cache_queries_total", "Prefix cache queries, in terms of number of queried tokens.",
              "counter", [](const EngineStats& s) { return s.prefix.queries; });
  per_replica("tidal:prefix_cache_hits_total", "Prefix cache hits, in terms of number of cached tokens.", "counter",
              [](const EngineStats& s) { return s.prefix.hits; });
  per_replica("tidal:num_preemptions_total", "Cumulative number of preemptions from the engine.", "counter",
              [](const EngineStats& s) { return s.num_preemptions; });
  per_model("tidal:prompt_tokens_total", "Number of prefill tokens processed.", "counter",
            [](const EngineMetrics& e) { return e.metrics.prompt_tokens.load(); });
  per_model("tidal:generation_tokens_total", "Number of generation tokens processed.", "counter",
            [](const EngineMetrics& e) { return e.metrics.generation_tokens.load(); });

  header(out, "tidal:request_success_total", "Count of finished requests by finish reason.", "counter");
  for (const EngineMetrics& e : engines) {
    for (FinishReason r : {FinishReason::kStop, FinishReason::kLength, FinishReason::kAbort}) {
      sample(out, "tidal:request_success_total",
             e.metrics.labels() + ",finished_reason=\"" + finish_reason_name(r) + "\"", double(e.metrics.finished(r)));
    }
  }

  auto histogram = [&](std::string_view name, std::string_view help, Histogram ServerMetrics::*member) {
    header(out, name, help, "histogram");
    for (const EngineMetrics& e : engines) (e.metrics.*member).render(out, name, e.metrics.labels());
  };
  histogram("tidal:time_to_first_token_seconds", "Histogram of time to first token in seconds.",
            &ServerMetrics::time_to_first_token);
  histogram("tidal:inter_token_latency_seconds", "Histogram of inter-token latency in seconds.",
            &ServerMetrics::inter_token_latency);
  histogram("tidal:e2e_request_latency_seconds", "Histogram of end to end request latency in seconds.",
            &ServerMetrics::e2e_request_latency);
  histogram("tidal:request_queue_time_seconds", "Histogram of time spent in WAITING phase for request.",
            &ServerMetrics::request_queue_time);

  // Live reconfiguration (reconfig/served_model.h).
  header(out, "tidal:reconfigurations_total", "Configuration switches by outcome.", "counter");
  for (const EngineMetrics& e : engines) {
    if (!e.runtime) continue;
    for (const char* outcome : {"done", "failed"}) {
      sample(out, "tidal:reconfigurations_total", e.metrics.labels() + ",outcome=\"" + outcome + "\"",
             double(e.runtime->num_switches(outcome)));
    }
  }
  header(out, "tidal:reconfiguration_pause_seconds",
         "Histogram of how long a switch paused the model (admission closed to reopened).", "histogram");
  for (const EngineMetrics& e : engines) {
    if (!e.runtime) continue;
    Histogram pauses(kPauseBuckets);
    for (double p : e.runtime->pause_seconds()) pauses.observe(p);
    pauses.render(out, "tidal:reconfiguration_pause_seconds", e.metrics.labels());
  }
  header(out, "tidal:config_info", "The active configuration of each model (value 1).", "gauge");
  for (const EngineMetrics& e : engines) {
    if (!e.runtime) continue;
    const ServedConfig c = e.runtime->config();
    sample(out, "tidal:config_info",
           e.metrics.labels() + ",variant=\"" + escape_label(c.variant) + "\",tp=\"" + std::to_string(c.layout.tp) +
               "\",pp=\"" + std::to_string(c.layout.pp) + "\",dp=\"" + std::to_string(c.layout.dp) + "\"",
           1.0);
  }

  // The reconfigurator (reconfig/reconfigurator.h).
  header(out, "tidal:reconfigurator_decisions_total", "Policy rounds of the reconfigurator.", "counter");
  for (const EngineMetrics& e : engines) {
    if (e.reconfigurator) {
      sample(out, "tidal:reconfigurator_decisions_total", e.metrics.labels(), double(e.reconfigurator->counters().decisions));
    }
  }
  header(out, "tidal:shadow_samples_total", "Sampled requests for shadow scoring, by outcome (scored, dropped).",
         "counter");
  for (const EngineMetrics& e : engines) {
    if (!e.reconfigurator) continue;
    const Reconfigurator::Counters k = e.reconfigurator->counters();
    sample(out, "tidal:shadow_samples_total", e.metrics.labels() + ",outcome=\"scored\"", double(k.samples_scored));
    sample(out, "tidal:shadow_samples_total", e.metrics.labels() + ",outcome=\"dropped\"", double(k.samples_dropped));
  }
  header(out, "tidal:shadow_compute_seconds_total", "Compute time spent on shadow scoring and calibration.", "counter");
  for (const EngineMetrics& e : engines) {
    if (e.reconfigurator) {
      sample(out, "tidal:shadow_compute_seconds_total", e.metrics.labels(), e.reconfigurator->counters().shadow_seconds);
    }
  }
  header(out, "tidal:variant_agreement_lower_bound",
         "One-sided Clopper-Pearson lower bound on the fraction of requests a variant answers as the base would.",
         "gauge");
  for (const EngineMetrics& e : engines) {
    if (!e.reconfigurator) continue;
    for (const VariantAccuracy& a : e.reconfigurator->accuracy()) {
      sample(out, "tidal:variant_agreement_lower_bound", e.metrics.labels() + ",variant=\"" + escape_label(a.variant) + "\"",
             a.lower_bound);
    }
  }
  header(out, "tidal:variant_agreement_trials", "Shadow-scored requests per variant.", "gauge");
  for (const EngineMetrics& e : engines) {
    if (!e.reconfigurator) continue;
    for (const VariantAccuracy& a : e.reconfigurator->accuracy()) {
      sample(out, "tidal:variant_agreement_trials", e.metrics.labels() + ",variant=\"" + escape_label(a.variant) + "\"",
             double(a.trials));
    }
  }
  return out;
}

}  // namespace tidal
