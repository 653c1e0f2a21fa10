// The accuracy ledger (reconfig/accuracy_ledger.h): which shadow scores
// count as agreeing trials, the counts and Clopper-Pearson bound it keeps,
// its sequential verdict, re-judging under a new objective, and unknown
// variants.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "reconfig/accuracy_ledger.h"

namespace tidal {
namespace {

Slo accuracy_slo(double accuracy, double agree_tokens = 0.9, double confidence = 0.95) {
  Slo slo;
  slo.accuracy = accuracy;
  slo.agree_tokens = agree_tokens;
  slo.confidence = confidence;
  return slo;
}

ShadowScore score(const std::string& variant, int64_t positions, int64_t matches, double kl = 0,
                  bool greedy = false) {
  ShadowScore s;
  s.variant = variant;
  s.positions = positions;
  s.top1_matches = matches;
  s.kl_sum = kl;
  s.greedy_agree = greedy;
  return s;
}

TEST(AccuracyLedger, AgreementIsTheShareOfMatchingPositions) {
  AccuracyLedger ledger(accuracy_slo(0.8, 0.9));
  ledger.add(score("int8", 10, 9, 0.5, false));   // 90%: agrees
  ledger.add(score("int8", 10, 10, 0.0, true));   // agrees
  ledger.add(score("int8", 10, 8, 1.0, false));   // 80%: does not
  ledger.add(score("int8", 20, 17, 1.5, false));  // 85%: does not
  ledger.add(score("int8", 0, 0));                // nothing scored: does not
  const VariantAccuracy a = ledger.get("int8");
  EXPECT_EQ(a.variant, "int8");
  EXPECT_EQ(a.trials, 5);
  EXPECT_EQ(a.agreements, 2);
  EXPECT_EQ(a.greedy_agreements, 1);
  EXPECT_DOUBLE_EQ(a.token_agreement, 44.0 / 50.0);
  EXPECT_DOUBLE_EQ(a.mean_kl, 3.0 / 50.0);
  EXPECT_DOUBLE_EQ(a.estimate, 2.0 / 5.0);
  EXPECT_DOUBLE_EQ(a.lower_bound, clopper_pearson_lower(2, 5, 0.95));
  EXPECT_EQ(a.verdict, AccuracyVerdict::kUnknown);

  const nlohmann::json j = accuracy_json(a);
  EXPECT_EQ(j["trials"], 5);
  EXPECT_EQ(j["verdict"], "unknown");
}

TEST(AccuracyLedger, AThresholdReachedExactlyAgrees) {
  // 14 of 25 positions is exactly 56%, and 55 of 100 exactly 55%, though
  // 0.56 * 25 and 0.55 * 100 come out above 14 and 55 in binary.
  AccuracyLedger at56(accuracy_slo(0.8, 0.56));
  at56.add(score("int8", 25, 14));
  at56.add(score("int8", 25, 13));
  EXPECT_EQ(at56.get("int8").agreements, 1);
  AccuracyLedger at55(accuracy_slo(0.8, 0.55));
  at55.add(score("int8", 100, 55));
  at55.add(score("int8", 20, 11));
  at55.add(score("int8", 100, 54));
  EXPECT_EQ(at55.get("int8").agreements, 2);
  AccuracyLedger all(accuracy_slo(0.8, 1.0));  // every position must match
  all.add(score("int8", 7, 7));
  all.add(score("int8", 7, 6));
  EXPECT_EQ(all.get("int8").agreements, 1);
}

TEST(AccuracyLedger, VerdictFollowsTheSequentialTest) {
  // Objective 0.8 at 95%: the test runs 0.8 against 0.9 (half the way to 1),
  // so each agreement adds log(0.9/0.8) and each disagreement log(0.1/0.2)
  // to a ratio that must reach log(19) or -log(19).
  const double accept = std::log(0.95 / 0.05);
  const int64_t to_meet = int64_t(std::ceil(accept / std::log(0.9 / 0.8)));  // 25
  const int64_t to_fail = int64_t(std::ceil(accept / std::log(2.0)));        // 5
  ASSERT_EQ(to_meet, 25);
  ASSERT_EQ(to_fail, 5);

  AccuracyLedger ledger(accuracy_slo(0.8));
  SequentialAgreementTest reference(0.8, 0.95, 0.1);
  for (int64_t i = 1; i <= to_meet; ++i) {
    ledger.add(score("good", 10, 10));
    reference.add(true);
    const VariantAccuracy a = ledger.get("good");
    EXPECT_EQ(a.verdict, reference.verdict()) << i;
    EXPECT_EQ(a.verdict, i < to_meet ? AccuracyVerdict::kUnknown : AccuracyVerdict::kMeets) << i;
    EXPECT_DOUBLE_EQ(a.lower_bound, clopper_pearson_lower(i, i, 0.95)) << i;
  }
  for (int64_t i = 1; i <= to_fail; ++i) {
    ledger.add(score("bad", 10, 2));
    EXPECT_EQ(ledger.get("bad").verdict, i < to_fail ? AccuracyVerdict::kUnknown : AccuracyVerdict::kFails) << i;
  }
  EXPECT_EQ(ledger.get("bad").agreements, 0);
  EXPECT_EQ(ledger.get("bad").lower_bound, 0);
  EXPECT_EQ(ledger.get("good").verdict, AccuracyVerdict::kMeets);  // variants are judged apart

  // A verdict stands until a later test finishes the other way.
  for (int i = 0; i < to_fail - 1; ++i) ledger.add(score("good", 10, 0));
  EXPECT_EQ(ledger.get("good").verdict, AccuracyVerdict::kMeets);
  ledger.add(score("good", 10, 0));
  EXPECT_EQ(ledger.get("good").verdict, AccuracyVerdict::kFails);
  EXPECT_EQ(ledger.get("good").trials, to_meet + to_fail);
}

TEST(AccuracyLedger, NewObjectiveRejudgesTheKeptScores) {
  AccuracyLedger ledger(accuracy_slo(0.8, 0.9));
  for (int i = 0; i < 30; ++i) ledger.add(score("int8", 10, 8));  // 80% of positions each
  VariantAccuracy a = ledger.get("int8");
  EXPECT_EQ(a.agreements, 0);
  EXPECT_EQ(a.verdict, AccuracyVerdict::kFails);

  ledger.set_slo(accuracy_slo(0.8, 0.8));
  a = ledger.get("int8");
  EXPECT_EQ(a.variant, "int8");
  EXPECT_EQ(a.trials, 30);
  EXPECT_EQ(a.agreements, 30);
  EXPECT_DOUBLE_EQ(a.estimate, 1.0);
  EXPECT_EQ(a.verdict, AccuracyVerdict::kMeets);
  EXPECT_DOUBLE_EQ(a.lower_bound, clopper_pearson_lower(30, 30, 0.95));
  EXPECT_DOUBLE_EQ(a.token_agreement, 0.8);

  // A lower confidence gives a higher bound on the same counts; a stricter
  // objective needs a new run of the test.
  ledger.set_slo(accuracy_slo(0.97, 0.8, 0.9));
  a = ledger.get("int8");
  EXPECT_DOUBLE_EQ(a.lower_bound, clopper_pearson_lower(30, 30, 0.9));
  EXPECT_GT(a.lower_bound, clopper_pearson_lower(30, 30, 0.95));
  SequentialAgreementTest reference(0.97, 0.9, 0.015);
  for (int i = 0; i < 30; ++i) reference.add(true);
  EXPECT_EQ(a.verdict, reference.verdict());
  EXPECT_EQ(a.verdict, AccuracyVerdict::kUnknown);  // 30 straight agreements are not yet enough for 0.97

  // Going back to the first objective gives the first answer.
  ledger.set_slo(accuracy_slo(0.8, 0.9));
  EXPECT_EQ(ledger.get("int8").agreements, 0);
  EXPECT_EQ(ledger.get("int8").verdict, AccuracyVerdict::kFails);
}

TEST(AccuracyLedger, UnknownVariantsAreUnknown) {
  AccuracyLedger ledger(accuracy_slo(0.95));
  const VariantAccuracy none = ledger.get("int4-g32");
  EXPECT_EQ(none.variant, "int4-g32");
  EXPECT_EQ(none.trials, 0);
  EXPECT_EQ(none.lower_bound, 0);
  EXPECT_EQ(none.verdict, AccuracyVerdict::kUnknown);
  EXPECT_TRUE(ledger.all().empty());

  ledger.add(score("w4a16-g32", 10, 10));
  ledger.add(score("int8", 10, 10));
  const std::vector<VariantAccuracy> all = ledger.all();
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(all[0].variant, "int8");
  EXPECT_EQ(all[1].variant, "w4a16-g32");
  EXPECT_EQ(ledger.get("int4-g32").trials, 0);

  // Without an accuracy objective the trials still count.
  AccuracyLedger any{Slo{}};
  for (int i = 0; i < 3; ++i) any.add(score("int8", 10, 9));
  EXPECT_EQ(any.get("int8").agreements, 3);
  EXPECT_DOUBLE_EQ(any.get("int8").lower_bound, clopper_pearson_lower(3, 3, 0.95));
}

}  // namespace
}  // namespace tidal
