#include "reconfig/reconfigurator.h"

#include <algorithm>
#include <cstdio>

#include "core/error.h"
#include "cpu/cpu_backend.h"
#include "model/variant.h"
#include "reconfig/shadow_scorer.h"

namespace tidal {

namespace {

using Clock = std::chrono::steady_clock;

// Shadow budget that may accumulate while nothing is scored: a second of
// compute, so an idle server cannot save up minutes to spend at once.
constexpr double kMaxCredit = 1.0;
constexpr size_t kMaxDecisions = 1000;
// Live step timings replace the calibration once this many steps of the
// configuration have been seen.
constexpr int64_t kLiveSteps = 200;

std::string layout_text(const ParallelConfig& p) {
  return "tp" + std::to_string(p.tp) + " pp" + std::to_string(p.pp) + " dp" + std::to_string(p.dp);
}

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

nlohmann::json window_json(const SliWindow& w, const Slo& slo) {
  nlohmann::json j = {{"seconds", w.seconds},         {"arrival_rps", w.arrival_rps},
                      {"goodput_rps", w.goodput_rps}, {"completed", w.completed},
                      {"rejected", w.rejected},       {"mean_prompt_tokens", w.mean_prompt_tokens},
                      {"mean_output_tokens", w.mean_output_tokens}, {"waiting", w.waiting},
                      {"running", w.running},         {"kv_usage", w.kv_usage},
                      {"busy_fraction", w.busy_fraction}};
  for (const LatencyObjective& o : slo.latency) {
    const std::optional<double> x = w.percentile_ms(o.metric, o.percentile);
    j[o.key()] = x ? nlohmann::json(*x) : nlohmann::json(nullptr);
  }
  return j;
}

}  // namespace

Reconfigurator::Reconfigurator(ServedModelRuntime& runtime, VariantStore& variants, ThreadPool& pool,
                               PoolTurns& turns, ReconfiguratorOptions options)
    : runtime_(runtime),
      variants_(variants),
      pool_(pool),
      turns_(turns),
      options_(std::move(options)),
      monitor_(std::make_shared<SliMonitor>(std::chrono::seconds(300), options_.seed)),
      ledger_(options_.slo),
      slo_(options_.slo) {
  if (options_.mode != "advise" && options_.mode != "on") {
    throw Error(ErrorCode::kInvalidArgument, "reconfigurator mode must be advise or on, not '" + options_.mode + "'");
  }
  for (const std::string& v : options_.candidates) {
    if (v == kBaseVariant) throw Error(ErrorCode::kInvalidArgument, "the base is always a candidate: do not list it");
    if (!parse_variant(v)) throw Error(ErrorCode::kInvalidArgument, "unknown candidate variant '" + v + "'");
  }
  if (!options_.state_db.empty()) {
    store_ = std::make_unique<HistoryStore>(options_.state_db, options_.model_key);
    size_t scores = 0;
    for (const ShadowScore& s : store_->shadow_scores()) {
      ledger_.add(s);
      ++scores;
    }
    const std::string layout = layout_text(runtime_.config().layout);
    for (const StepProfile& p : store_->step_profiles()) {
      StepFit fit{p.a_seconds, p.b_seconds_per_token, p.source, p.observations};
      if (p.source == "calibration") calibrated_[p.variant] = fit;
      if (p.source == "live" && p.layout == layout) live_[p.variant] = fit;
    }
    std::fprintf(stderr, "tidal: reconfigurator: history %s: %zu shadow scores, %zu calibrations, %zu live profiles\n",
                 options_.state_db.c_str(), scores, calibrated_.size(), live_.size());
  }
  monitor_->set_config(describe_config(runtime_.config()));
  monitor_->set_slo(slo_);
  monitor_->set_sampling(options_.shadow_fraction, [this](FinishedRequest&& r) { take_sample(std::move(r)); });
  runtime_.set_switch_listener([this](const SwitchRecord& r) {
    if (r.outcome != "done") return;
    monitor_->set_config(describe_config(r.to));
    std::lock_guard<std::mutex> lock(mutex_);
    last_switch_ = Clock::now();
    switched_ever_ = true;
  });
  runtime_.engine().set_observer(monitor_);
  shadow_thread_ = std::thread([this] { shadow_loop(); });
  policy_thread_ = std::thread([this] { policy_loop(); });
}

Reconfigurator::~Reconfigurator() { stop(); }

void Reconfigurator::stop() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
    wake_.notify_all();
  }
  if (policy_thread_.joinable()) policy_thread_.join();
  if (shadow_thread_.joinable()) shadow_thread_.join();
  runtime_.engine().set_observer(nullptr);
  runtime_.set_switch_listener(nullptr);
}

int64_t Reconfigurator::now_ms() const {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

Slo Reconfigurator::slo() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return slo_;
}

void Reconfigurator::set_slo(const Slo& slo) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    slo_ = slo;
  }
  ledger_.set_slo(slo);
  monitor_->set_slo(slo);
}

void Reconfigurator::pin() {
  std::lock_guard<std::mutex> lock(mutex_);
  pinned_ = true;
}

void Reconfigurator::unpin() {
  std::lock_guard<std::mutex> lock(mutex_);
  pinned_ = false;
}

bool Reconfigurator::pinned() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return pinned_;
}

Reconfigurator::Counters Reconfigurator::counters() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return counters_;
}

std::vector<nlohmann::json> Reconfigurator::decisions(size_t limit) const {
  std::lock_guard<std::mutex> lock(mutex_);
  const size_t n = std::min(limit, decisions_.size());
  return std::vector<nlohmann::json>(decisions_.end() - std::ptrdiff_t(n), decisions_.end());
}

void Reconfigurator::take_sample(FinishedRequest&& r) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (samples_.size() >= options_.max_pending_samples) {
    samples_.pop_front();
    ++counters_.samples_dropped;
  }
  samples_.push_back(std::move(r));
  wake_.notify_all();
}

void Reconfigurator::run_unit(const std::function<void()>& work, bool budgeted) {
  {
    std::unique_lock<std::mutex> lock(mutex_);
    for (;;) {
      if (stop_) throw Stopped{};
      if (!budgeted) break;
      // The credit grows at the budget's share of wall-clock time.
      const Clock::time_point now = Clock::now();
      credit_seconds_ = std::min(kMaxCredit, credit_seconds_ + options_.shadow_budget *
                                                                   std::chrono::duration<double>(now - credit_at_).count());
      credit_at_ = now;
      if (credit_seconds_ > 0) break;
      const double wait = std::clamp(-credit_seconds_ / std::max(options_.shadow_budget, 1e-6), 0.005, 0.5);
      wake_.wait_for(lock, std::chrono::duration<double>(wait));
    }
  }
  turns_.acquire();
  const Clock::time_point start = Clock::now();
  try {
    work();
  } catch (...) {
    turns_.release();
    throw;
  }
  turns_.release();
  const double spent = seconds_since(start);
  std::lock_guard<std::mutex> lock(mutex_);
  if (budgeted) credit_seconds_ -= spent;
  counters_.shadow_seconds += spent;
}

void Reconfigurator::calibrate_missing() {
  std::vector<std::string> all = {kBaseVariant};
  all.insert(all.end(), options_.candidates.begin(), options_.candidates.end());
  CpuBackend backend(pool_);
  for (const std::string& v : all) {
    const std::shared_ptr<const Model> model = variants_.get(v);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      held_.push_back(model);
      if (calibrated_.count(v)) continue;
    }
    // Once per variant and machine (the history keeps it), so it is not
    // held to the shadow budget; it still takes the pool's turns.
    StepFit fit = calibrate_step_time(*model, backend, [this](const std::function<void()>& w) { run_unit(w, false); });
    std::fprintf(stderr, "tidal: reconfigurator: calibrated %s: step = %.2f ms + %.3f ms/token\n", v.c_str(),
                 fit.a * 1e3, fit.b * 1e3);
    if (store_) {
      store_->put_step_profile({v, layout_text(ParallelConfig{}), fit.a, fit.b, fit.observations, fit.source, now_ms()});
    }
    std::lock_guard<std::mutex> lock(mutex_);
    calibrated_[v] = fit;
  }
}

void Reconfigurator::shadow_loop() {
  try {
    calibrate_missing();
    ShadowScorer scorer(pool_, [this](const std::function<void()>& w) { run_unit(w, true); });
    const std::shared_ptr<const Model> base = variants_.get(kBaseVariant);
    for (;;) {
      FinishedRequest sample;
      std::vector<std::string> order;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        wake_.wait(lock, [this] { return stop_ || !samples_.empty(); });
        if (stop_) return;
        sample = std::move(samples_.front());
        samples_.pop_front();
        // The variants the policy waits on first, then the others.
        order = wanted_;
        for (const std::string& v : options_.candidates) {
          if (std::find(order.begin(), order.end(), v) == order.end()) order.push_back(v);
        }
      }
      if (order.empty() || sample.prompt.empty() || sample.output.empty() ||
          sample.prompt.size() + sample.output.size() > size_t(base->config.max_seq_len)) {
        continue;
      }
      std::vector<std::pair<std::string, std::shared_ptr<const Model>>> models;
      for (const std::string& v : order) models.emplace_back(v, variants_.get(v));
      const std::vector<ShadowResult> results = scorer.score(*base, models, sample.prompt, sample.output);
      for (const ShadowResult& r : results) {
        const ShadowScore s{r.variant, r.totals.positions, r.totals.top1_matches, r.totals.kl, r.greedy_agree(),
                            now_ms()};
        ledger_.add(s);
        if (store_) {
          try {
            store_->add_shadow_score(s);
          } catch (const std::exception& e) {
            std::fprintf(stderr, "tidal: reconfigurator: history not written: %s\n", e.what());
          }
        }
      }
      std::lock_guard<std::mutex> lock(mutex_);
      ++counters_.samples_scored;
    }
  } catch (const Stopped&) {
  } catch (const std::exception& e) {
    std::fprintf(stderr, "tidal: reconfigurator: shadow monitoring stopped: %s\n", e.what());
  }
}

std::optional<StepFit> Reconfigurator::fit_of(const std::string& variant, const std::string& current_variant) const {
  if (variant == current_variant) {
    const std::string config = monitor_->config();
    if (monitor_->steps_seen(config) >= kLiveSteps) {
      if (const auto fit = monitor_->step_fit(config)) {
        return StepFit{fit->first, fit->second, "live", monitor_->steps_seen(config)};
      }
    }
  }
  std::lock_guard<std::mutex> lock(mutex_);
  if (auto it = live_.find(variant); it != live_.end()) return it->second;
  if (auto it = calibrated_.find(variant); it != calibrated_.end()) return it->second;
  return std::nullopt;
}

void Reconfigurator::persist_live_fit() {
  const ServedConfig current = runtime_.config();
  const std::optional<StepFit> fit = fit_of(current.variant, current.variant);
  if (!fit || fit->source != "live" || monitor_->config() != describe_config(current)) return;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    live_[current.variant] = *fit;
  }
  if (store_) {
    store_->put_step_profile(
        {current.variant, layout_text(current.layout), fit->a, fit->b, fit->observations, "live", now_ms()});
  }
}

PolicyInput Reconfigurator::gather() const {
  PolicyInput in;
  in.slo = slo();
  in.current = runtime_.config();
  in.load = monitor_->window(options_.window);
  in.violating = monitor_->window(options_.window, describe_config(in.current)).violates(in.slo);
  {
    std::lock_guard<std::mutex> lock(mutex_);
    in.seconds_since_switch = switched_ever_ ? seconds_since(last_switch_) : 1e9;
    in.pinned = pinned_;
  }
  std::vector<std::string> all = {kBaseVariant};
  all.insert(all.end(), options_.candidates.begin(), options_.candidates.end());
  for (const std::string& v : all) {
    const VariantAccuracy a = ledger_.get(v);
    in.candidates.push_back({v, a.verdict, a.lower_bound, fit_of(v, in.current.variant)});
  }
  return in;
}

nlohmann::json Reconfigurator::decide_now() { return round(); }

nlohmann::json Reconfigurator::round() {
  std::lock_guard<std::mutex> round_lock(round_mutex_);
  try {
    persist_live_fit();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "tidal: reconfigurator: history not written: %s\n", e.what());
  }
  const PolicyInput in = gather();
  const Decision d = decide(in, options_.policy);
  {
    std::lock_guard<std::mutex> lock(mutex_);
    wanted_ = d.wanted;
  }
  // Directed sampling: more samples while a verdict is awaited.
  monitor_->set_sampling(d.wanted.empty() ? options_.shadow_fraction
                                          : std::max(options_.shadow_fraction, options_.directed_fraction),
                         [this](FinishedRequest&& r) { take_sample(std::move(r)); });
  nlohmann::json record = decision_json(d);
  record["at_ms"] = now_ms();
  record["mode"] = options_.mode;
  record["current"] = config_json(in.current);
  record["violating"] = in.violating;
  record["load"] = window_json(in.load, in.slo);
  nlohmann::json accuracy = nlohmann::json::array();
  for (const CandidateState& c : in.candidates) {
    if (c.variant != kBaseVariant) accuracy.push_back(accuracy_json(ledger_.get(c.variant)));
  }
  record["accuracy"] = std::move(accuracy);
  {
    std::lock_guard<std::mutex> lock(mutex_);
    record["id"] = next_decision_++;
  }
  if (d.change) {
    if (options_.mode == "on") {
      deploy(d, record);
    } else {
      record["deployed"] = "no (advise mode)";
    }
    std::fprintf(stderr, "tidal: reconfigurator: decision %s: %s -> %s: %s (%s)\n",
                 record["id"].dump().c_str(), describe_config(in.current).c_str(), describe_config(d.target).c_str(),
                 d.reason.c_str(), record.value("deployed", std::string("no")).c_str());
  }
  {
    std::lock_guard<std::mutex> lock(mutex_);
    ++counters_.decisions;
    decisions_.push_back(record);
    if (decisions_.size() > kMaxDecisions) decisions_.pop_front();
  }
  if (store_) {
    try {
      store_->add_decision(record["at_ms"].get<int64_t>(), record.dump());
      const SliWindow& w = in.load;
      auto p95 = [&](LatencyMetric m) { return w.percentile_ms(m, 95).value_or(std::nan("")); };
      store_->add_workload({record["at_ms"].get<int64_t>(), describe_config(in.current), w.arrival_rps, w.goodput_rps,
                            p95(LatencyMetric::kTtft), p95(LatencyMetric::kTpot), p95(LatencyMetric::kE2e), w.waiting,
                            w.running, w.kv_usage});
    } catch (const std::exception& e) {
      std::fprintf(stderr, "tidal: reconfigurator: history not written: %s\n", e.what());
    }
  }
  return record;
}

void Reconfigurator::deploy(const Decision& d, nlohmann::json& record) {
  // Delayed deployment: a quiet moment moves no request, or the delay runs
  // out; a missed objective cannot wait.
  const Clock::time_point start = Clock::now();
  if (!d.urgent) {
    while (seconds_since(start) < options_.max_delay_seconds) {
      const EngineStats s = runtime_.engine().stats();
      if (s.num_running == 0 && s.num_waiting == 0) break;
      std::unique_lock<std::mutex> lock(mutex_);
      if (wake_.wait_for(lock, std::chrono::milliseconds(20), [this] { return stop_; })) {
        record["deployed"] = "no (stopping)";
        return;
      }
    }
  }
  record["waited_seconds"] = seconds_since(start);
  if (pinned()) {
    record["deployed"] = "no (pinned by the operator meanwhile)";
    return;
  }
  ConfigChange change;
  const ServedConfig current = runtime_.config();
  if (d.target.variant != current.variant) change.variant = d.target.variant;
  change.max_num_seqs = d.target.max_num_seqs;
  change.target_tpot_ms = d.target.target_tpot_ms;
  try {
    const uint64_t id = runtime_.request_switch(change, "reconfigurator", {},
                                                "decision " + record["id"].dump() + ": " + d.reason);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      ++counters_.switches_requested;
    }
    const SwitchRecord r = runtime_.wait_for(id);
    record["switch_id"] = id;
    record["deployed"] = r.outcome == "done" ? "yes" : "no (switch " + r.outcome + ": " + r.error + ")";
  } catch (const SwitchConflict& e) {
    record["deployed"] = std::string("no (") + e.what() + ")";
  } catch (const Error& e) {
    record["deployed"] = std::string("no (") + e.what() + ")";
  }
}

void Reconfigurator::policy_loop() {
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(mutex_);
      if (wake_.wait_for(lock, std::chrono::duration<double>(options_.interval_seconds), [this] { return stop_; })) {
        return;
      }
    }
    try {
      round();
    } catch (const std::exception& e) {
      std::fprintf(stderr, "tidal: reconfigurator: policy round failed: %s\n", e.what());
    }
  }
}

nlohmann::json Reconfigurator::status() const {
  const Slo s = slo();
  const ServedConfig current = runtime_.config();
  nlohmann::json candidates = nlohmann::json::array();
  std::vector<std::string> all = {kBaseVariant};
  all.insert(all.end(), options_.candidates.begin(), options_.candidates.end());
  for (const std::string& v : all) {
    nlohmann::json c = v == kBaseVariant ? nlohmann::json{{"variant", v}, {"verdict", "base"}} : accuracy_json(ledger_.get(v));
    const std::optional<StepFit> fit = fit_of(v, current.variant);
    c["profile"] = fit ? nlohmann::json{{"a_ms", fit->a * 1e3}, {"b_ms_per_token", fit->b * 1e3}, {"source", fit->source},
                                        {"observations", fit->observations}}
                       : nlohmann::json(nullptr);
    candidates.push_back(std::move(c));
  }
  const Counters k = counters();
  nlohmann::json j = {{"mode", options_.mode},
                      {"slo", slo_json(s)},
                      {"pinned", pinned()},
                      {"config", config_json(current)},
                      {"window", window_json(monitor_->window(options_.window), s)},
                      {"candidates", std::move(candidates)},
                      {"shadow",
                       {{"fraction", options_.shadow_fraction},
                        {"budget", options_.shadow_budget},
                        {"scored", k.samples_scored},
                        {"dropped", k.samples_dropped},
                        {"seconds", k.shadow_seconds}}},
                      {"state_db", options_.state_db}};
  {
    std::lock_guard<std::mutex> lock(mutex_);
    j["shadow"]["pending"] = samples_.size();
    j["wanted"] = wanted_;
  }
  return j;
}

}  // namespace tidal
