#include "reconfig/sli_monitor.h"

#include <algorithm>
#include <cmath>

namespace tidal {

namespace {

double ms_or_none(double seconds) { return seconds < 0 ? -1 : seconds * 1000.0; }

}  // namespace

std::optional<double> SliWindow::percentile_ms(LatencyMetric metric, double p) const {
  const std::vector<double>& all = metric == LatencyMetric::kTtft ? ttft_ms : metric == LatencyMetric::kTpot ? tpot_ms : e2e_ms;
  std::vector<double> v;
  for (double x : all) {
    if (x >= 0) v.push_back(x);
  }
  if (v.empty()) return std::nullopt;
  // Nearest rank: the smallest value at or above p percent of the values.
  // The slack keeps a rank that is whole in decimal but not in binary
  // (p99.9 of 1000 values: 999.0000000000001) from rounding up to the next.
  const size_t rank = size_t(std::max(0.0, std::ceil(p / 100.0 * double(v.size()) - 1e-9)));
  const size_t k = std::min(v.size() - 1, rank == 0 ? 0 : rank - 1);
  std::nth_element(v.begin(), v.begin() + std::ptrdiff_t(k), v.end());
  return v[k];
}

bool SliWindow::violates(const Slo& slo, int64_t min_samples) const {
  if (completed < min_samples) return false;
  for (const LatencyObjective& o : slo.latency) {
    const std::optional<double> x = percentile_ms(o.metric, o.percentile);
    if (x && *x > o.ms) return true;
  }
  return false;
}

SliMonitor::SliMonitor(std::chrono::seconds horizon, uint64_t seed) : horizon_(horizon), rng_(seed) {}

void SliMonitor::set_config(const std::string& config) {
  std::lock_guard<std::mutex> lock(mutex_);
  config_ = config;
}

std::string SliMonitor::config() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return config_;
}

void SliMonitor::set_slo(const Slo& slo) {
  std::lock_guard<std::mutex> lock(mutex_);
  slo_ = slo;
}

void SliMonitor::set_sampling(double fraction, SampleSink sink) {
  std::lock_guard<std::mutex> lock(mutex_);
  fraction_ = fraction;
  sample_sink_ = std::move(sink);
}

void SliMonitor::forget_old(Clock::time_point now) {
  const Clock::time_point oldest = now - horizon_;
  while (!arrivals_.empty() && arrivals_.front().at < oldest) arrivals_.pop_front();
  while (!steps_.empty() && steps_.front().at < oldest) steps_.pop_front();
  while (!done_.empty() && done_.front().at < oldest) done_.pop_front();
}

bool SliMonitor::on_arrival(const Request&, bool admitted) {
  const Clock::time_point now = Clock::now();
  std::lock_guard<std::mutex> lock(mutex_);
  forget_old(now);
  arrivals_.push_back({now, admitted, config_});
  return admitted && sample_sink_ && fraction_ > 0 && std::uniform_real_distribution<double>(0, 1)(rng_) < fraction_;
}

void SliMonitor::on_step(int tokens, double seconds, size_t running, size_t waiting, double kv_usage) {
  const Clock::time_point now = Clock::now();
  std::lock_guard<std::mutex> lock(mutex_);
  forget_old(now);
  steps_.push_back({now, seconds, config_});
  running_ = double(running);
  waiting_ = double(waiting);
  kv_usage_ = kv_usage;
  if (tokens > 0) {
    fits_[config_].observe(tokens, seconds);
    ++step_counts_[config_];
  }
}

void SliMonitor::on_finished(FinishedRequest&& r) {
  const Clock::time_point now = Clock::now();
  SampleSink sink;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    forget_old(now);
    done_.push_back({now, ms_or_none(r.ttft_seconds), ms_or_none(r.tpot_seconds()), r.e2e_seconds * 1000.0,
                     r.prompt_tokens, r.output_tokens, r.aborted, config_});
    if (!r.aborted && !r.output.empty()) sink = sample_sink_;
  }
  if (sink) sink(std::move(r));
}

SliWindow SliMonitor::window(std::chrono::seconds span, const std::string& config) const {
  const Clock::time_point now = Clock::now();
  std::lock_guard<std::mutex> lock(mutex_);
  const Clock::time_point from = std::max(now - span, started_);
  SliWindow w;
  w.seconds = std::max(std::chrono::duration<double>(now - from).count(), 1e-3);
  auto counts = [&](const std::string& c) { return config.empty() || c == config; };
  for (const Arrival& a : arrivals_) {
    if (a.at < from || !counts(a.config)) continue;
    ++w.arrivals;
    w.rejected += !a.admitted;
  }
  double busy = 0;
  for (const Step& s : steps_) {
    if (s.at < from || !counts(s.config)) continue;
    ++w.steps;
    busy += s.seconds;
  }
  double prompt = 0, output = 0;
  for (const Done& d : done_) {
    if (d.at < from || !counts(d.config)) continue;
    ++w.completed;
    w.aborted += d.aborted;
    prompt += d.prompt_tokens;
    output += d.output_tokens;
    w.ttft_ms.push_back(d.ttft_ms);
    w.tpot_ms.push_back(d.tpot_ms);
    w.e2e_ms.push_back(d.e2e_ms);
    bool good = !d.aborted;
    for (const LatencyObjective& o : slo_.latency) {
      const double x = o.metric == LatencyMetric::kTtft ? d.ttft_ms : o.metric == LatencyMetric::kTpot ? d.tpot_ms : d.e2e_ms;
      // A request too short to have a TPOT meets any TPOT objective.
      if (x > o.ms || (x < 0 && o.metric != LatencyMetric::kTpot)) good = false;
    }
    w.good += good;
  }
  w.arrival_rps = double(w.arrivals) / w.seconds;
  w.goodput_rps = double(w.good) / w.seconds;
  if (w.completed > 0) {
    w.mean_prompt_tokens = prompt / double(w.completed);
    w.mean_output_tokens = output / double(w.completed);
  }
  w.busy_fraction = std::min(1.0, busy / w.seconds);
  w.running = running_;
  w.waiting = waiting_;
  w.kv_usage = kv_usage_;
  return w;
}

std::optional<std::pair<double, double>> SliMonitor::step_fit(const std::string& config) const {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = fits_.find(config);
  if (it == fits_.end() || !it->second.ready()) return std::nullopt;
  return std::make_pair(it->second.intercept(), it->second.slope());
}

int64_t SliMonitor::steps_seen(const std::string& config) const {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = step_counts_.find(config);
  return it == step_counts_.end() ? 0 : it->second;
}

}  // namespace tidal
