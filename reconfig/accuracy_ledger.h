// Per candidate variant, the shadow scores of sampled requests and what
// they say against the accuracy objective: each scored request is one
// trial that agrees when its served positions' top-1 agreement reaches
// agree_tokens; the ledger keeps the agreement estimate, its exact one-sided
// Clopper-Pearson lower bound, and a sequential test's verdict (SPRT:
// valid however often it is looked at). A variant never scored is
// "unknown", never good. The raw scores are kept, so a new objective or
// agree_tokens re-judges every trial without scoring again.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "reconfig/agreement_stats.h"
#include "reconfig/history_store.h"
#include "reconfig/slo.h"

namespace tidal {

struct VariantAccuracy {
  std::string variant;
  int64_t trials = 0, agreements = 0, greedy_agreements = 0;
  double token_agreement = 0;  // top-1 matches over all scored positions
  double mean_kl = 0;          // per position
  double estimate = 0;         // agreements / trials (0 with none)
  double lower_bound = 0;      // Clopper-Pearson, one-sided at the SLO's confidence
  AccuracyVerdict verdict = AccuracyVerdict::kUnknown;
};
nlohmann::json accuracy_json(const VariantAccuracy& a);

class AccuracyLedger {
 public:
  explicit AccuracyLedger(const Slo& slo);
  // Re-judges every kept score under the new objective.
  void set_slo(const Slo& slo);
  void add(const ShadowScore& score);
  VariantAccuracy get(const std::string& variant) const;
  std::vector<VariantAccuracy> all() const;

 private:
  struct Entry {
    std::vector<ShadowScore> scores;
    VariantAccuracy summary;
    SequentialAgreementTest test;
  };
  static constexpr size_t kMaxScores = 10000;  // per variant, as the history keeps
  bool agrees(const ShadowScore& s) const;
  SequentialAgreementTest new_test() const;
  void judge(Entry& e, const ShadowScore& s) const;
  void finish(Entry& e) const;  // the bound and verdict from the counts

  mutable std::mutex mutex_;
  Slo slo_;
  std::map<std::string, Entry> entries_;
};

}  // namespace tidal
