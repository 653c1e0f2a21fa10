#include "reconfig/accuracy_ledger.h"

namespace tidal {

nlohmann::json accuracy_json(const VariantAccuracy& a) {
  return {{"variant", a.variant},
          {"trials", a.trials},
          {"agreements", a.agreements},
          {"greedy_agreements", a.greedy_agreements},
          {"token_agreement", a.token_agreement},
          {"mean_kl", a.mean_kl},
          {"estimate", a.estimate},
          {"lower_bound", a.lower_bound},
          {"verdict", accuracy_verdict_name(a.verdict)}};
}

AccuracyLedger::AccuracyLedger(const Slo& slo) : slo_(slo) {}

bool AccuracyLedger::agrees(const ShadowScore& s) const {
  return request_agrees(s.positions, s.top1_matches, slo_.agree_tokens);
}

SequentialAgreementTest AccuracyLedger::new_test() const {
  // Without an accuracy objective any variant will do; the test still runs
  // (at 0.5, a neutral objective) so its counts stay meaningful. The
  // indifference zone is half the distance to perfect agreement: a variant
  // that agrees that much more often than the objective is accepted
  // quickly (a few dozen trials at 0.95), and one that agrees about as
  // often as the objective takes long either way.
  const double objective = slo_.accuracy.value_or(0.5);
  return SequentialAgreementTest(objective, slo_.confidence, (1.0 - objective) / 2.0);
}

void AccuracyLedger::judge(Entry& e, const ShadowScore& s) const {
  const bool ok = agrees(s);
  VariantAccuracy& a = e.summary;
  ++a.trials;
  a.agreements += ok;
  a.greedy_agreements += s.greedy_agree;
  e.test.add(ok);
}

void AccuracyLedger::finish(Entry& e) const {
  VariantAccuracy& a = e.summary;
  int64_t positions = 0, matches = 0;
  double kl = 0;
  for (const ShadowScore& s : e.scores) {
    positions += s.positions;
    matches += s.top1_matches;
    kl += s.kl_sum;
  }
  a.token_agreement = positions > 0 ? double(matches) / double(positions) : 0;
  a.mean_kl = positions > 0 ? kl / double(positions) : 0;
  a.estimate = a.trials > 0 ? double(a.agreements) / double(a.trials) : 0;
  a.lower_bound = clopper_pearson_lower(a.agreements, a.trials, slo_.confidence);
  a.verdict = e.test.verdict();
}

void AccuracyLedger::set_slo(const Slo& slo) {
  std::lock_guard<std::mutex> lock(mutex_);
  slo_ = slo;
  for (auto& [variant, e] : entries_) {
    e.summary = VariantAccuracy{};
    e.summary.variant = variant;
    e.test = new_test();
    for (const ShadowScore& s : e.scores) judge(e, s);
    finish(e);
  }
}

void AccuracyLedger::add(const ShadowScore& score) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = entries_.find(score.variant);
  if (it == entries_.end()) {
    it = entries_.emplace(score.variant, Entry{{}, {}, new_test()}).first;
    it->second.summary.variant = score.variant;
  }
  Entry& e = it->second;
  e.scores.push_back(score);
  if (e.scores.size() > kMaxScores) e.scores.erase(e.scores.begin());
  judge(e, score);
  finish(e);
}

VariantAccuracy AccuracyLedger::get(const std::string& variant) const {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = entries_.find(variant);
  if (it != entries_.end()) return it->second.summary;
  VariantAccuracy unknown;
  unknown.variant = variant;
  return unknown;
}

std::vector<VariantAccuracy> AccuracyLedger::all() const {
  std::lock_guard<std::mutex> lock(mutex_);
  std::vector<VariantAccuracy> out;
  for (const auto& [variant, e] : entries_) out.push_back(e.summary);
  return out;
}

}  // namespace tidal
