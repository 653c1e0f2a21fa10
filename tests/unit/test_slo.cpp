// Service level objectives (reconfig/slo.h): the flag form and the JSON
// form parse to the same objectives, round-trip, and reject what they must
// with an Error naming the bad item.
#include <gtest/gtest.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <string>

#include "core/error.h"
#include "reconfig/slo.h"

namespace tidal {
namespace {

const char* const kFull = "ttft_p95_ms=1000,tpot_p95_ms=50,e2e_p99.9_ms=20000,accuracy=0.95,confidence=0.9,agree_tokens=0.8";

void expect_same(const Slo& a, const Slo& b) {
  ASSERT_EQ(a.latency.size(), b.latency.size());
  for (size_t i = 0; i < a.latency.size(); ++i) {
    EXPECT_EQ(a.latency[i].metric, b.latency[i].metric) << i;
    EXPECT_DOUBLE_EQ(a.latency[i].percentile, b.latency[i].percentile) << i;
    EXPECT_DOUBLE_EQ(a.latency[i].ms, b.latency[i].ms) << i;
  }
  EXPECT_EQ(a.accuracy.has_value(), b.accuracy.has_value());
  if (a.accuracy && b.accuracy) {
    EXPECT_DOUBLE_EQ(*a.accuracy, *b.accuracy);
  }
  EXPECT_DOUBLE_EQ(a.confidence, b.confidence);
  EXPECT_DOUBLE_EQ(a.agree_tokens, b.agree_tokens);
}

// JSON objects keep their keys sorted, so the objectives come back in key order.
Slo sorted(Slo slo) {
  std::sort(slo.latency.begin(), slo.latency.end(),
            [](const LatencyObjective& a, const LatencyObjective& b) { return a.key() < b.key(); });
  return slo;
}

TEST(Slo, ParsesEveryKind) {
  const Slo slo = parse_slo(kFull);
  ASSERT_EQ(slo.latency.size(), 3u);
  EXPECT_EQ(slo.latency[0].metric, LatencyMetric::kTtft);
  EXPECT_EQ(slo.latency[0].percentile, 95);
  EXPECT_EQ(slo.latency[0].ms, 1000);
  EXPECT_EQ(slo.latency[1].metric, LatencyMetric::kTpot);
  EXPECT_EQ(slo.latency[1].ms, 50);
  EXPECT_EQ(slo.latency[2].metric, LatencyMetric::kE2e);
  EXPECT_DOUBLE_EQ(slo.latency[2].percentile, 99.9);
  EXPECT_EQ(slo.latency[2].ms, 20000);
  EXPECT_EQ(slo.latency[2].key(), "e2e_p99.9_ms");
  ASSERT_TRUE(slo.accuracy.has_value());
  EXPECT_DOUBLE_EQ(*slo.accuracy, 0.95);
  EXPECT_DOUBLE_EQ(slo.confidence, 0.9);
  EXPECT_DOUBLE_EQ(slo.agree_tokens, 0.8);
  ASSERT_NE(slo.find(LatencyMetric::kTpot), nullptr);
  EXPECT_EQ(slo.find(LatencyMetric::kTpot)->ms, 50);
}

TEST(Slo, DefaultsAndEmptyItems) {
  const Slo none = parse_slo("");
  EXPECT_TRUE(none.latency.empty());
  EXPECT_FALSE(none.accuracy.has_value());
  EXPECT_DOUBLE_EQ(none.confidence, 0.95);
  EXPECT_DOUBLE_EQ(none.agree_tokens, 0.9);
  EXPECT_EQ(none.find(LatencyMetric::kTtft), nullptr);

  // Empty items are skipped; a repeated objective replaces the first.
  const Slo twice = parse_slo("ttft_p95_ms=1000,,ttft_p95_ms=500,ttft_p99_ms=2000,");
  ASSERT_EQ(twice.latency.size(), 2u);
  EXPECT_EQ(twice.latency[0].ms, 500);
  EXPECT_EQ(twice.latency[1].percentile, 99);
  EXPECT_EQ(twice.find(LatencyMetric::kTtft)->ms, 500);
  EXPECT_DOUBLE_EQ(parse_slo("agree_tokens=1").agree_tokens, 1.0);  // every position may be required
}

TEST(Slo, DescribeRoundTrips) {
  EXPECT_EQ(describe_slo(parse_slo(kFull)), kFull);
  expect_same(parse_slo(describe_slo(parse_slo(kFull))), parse_slo(kFull));
  // Without an accuracy objective the description has none either.
  const Slo latency_only = parse_slo("tpot_p50_ms=12.5");
  EXPECT_EQ(describe_slo(latency_only), "tpot_p50_ms=12.5,confidence=0.95,agree_tokens=0.9");
  expect_same(parse_slo(describe_slo(latency_only)), latency_only);
}

TEST(Slo, JsonRoundTrips) {
  const Slo slo = parse_slo(kFull);
  const nlohmann::json j = slo_json(slo);
  EXPECT_EQ(j["ttft_p95_ms"], 1000);
  EXPECT_EQ(j["tpot_p95_ms"], 50);
  EXPECT_EQ(j["e2e_p99.9_ms"], 20000);
  EXPECT_DOUBLE_EQ(j["accuracy"].get<double>(), 0.95);
  EXPECT_DOUBLE_EQ(j["confidence"].get<double>(), 0.9);
  EXPECT_DOUBLE_EQ(j["agree_tokens"].get<double>(), 0.8);
  expect_same(sorted(slo_from_json(j)), sorted(slo));
  expect_same(sorted(slo_from_json(nlohmann::json::parse(j.dump()))), sorted(slo));

  // No accuracy objective reads back as none (GET, edit, PUT must work).
  const Slo latency_only = parse_slo("ttft_p90_ms=800");
  const nlohmann::json lj = slo_json(latency_only);
  EXPECT_TRUE(lj["accuracy"].is_null());
  expect_same(slo_from_json(lj), latency_only);
  expect_same(slo_from_json(nlohmann::json::object()), Slo{});
}

void expect_invalid(const std::string& text, const std::string& mention) {
  try {
    parse_slo(text);
    ADD_FAILURE() << "accepted '" << text << "'";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument) << text;
    EXPECT_NE(std::string(e.what()).find(mention), std::string::npos) << text << ": " << e.what();
  }
}

TEST(Slo, RejectsBadItems) {
  expect_invalid("latency_p95_ms=10", "unknown objective 'latency_p95_ms'");
  expect_invalid("accurcy=0.9", "unknown objective");
  expect_invalid("ttft_p95_ms=fast", "must be a number");
  expect_invalid("ttft_p95_ms=", "must be a number");
  expect_invalid("ttft_p95_ms=10x", "must be a number");
  expect_invalid("ttft_p95_ms", "not key=value");
  expect_invalid("ttft_p100_ms=10", "percentile");
  expect_invalid("ttft_p0_ms=10", "percentile");
  expect_invalid("ttft_p_ms=10", "percentile");
  expect_invalid("ttft_pxx_ms=10", "percentile");
  expect_invalid("ttft_p95=10", "must end in _ms");
  expect_invalid("ttft_p95_ms=-5", "positive number of milliseconds");
  expect_invalid("ttft_p95_ms=0", "positive number of milliseconds");
  expect_invalid("tpot_p95_ms=inf", "positive number of milliseconds");
  expect_invalid("accuracy=1", "accuracy must be in (0, 1)");
  expect_invalid("accuracy=0", "accuracy must be in (0, 1)");
  expect_invalid("accuracy=1.5", "accuracy");
  expect_invalid("confidence=1", "confidence");
  expect_invalid("confidence=-0.1", "confidence");
  expect_invalid("agree_tokens=0", "agree_tokens must be in (0, 1]");
  expect_invalid("agree_tokens=1.01", "agree_tokens");
  // The JSON form applies the same checks, and wants numbers.
  EXPECT_THROW(slo_from_json(nlohmann::json{{"accuracy", 1.0}}), Error);
  EXPECT_THROW(slo_from_json(nlohmann::json{{"ttft_p95_ms", "1000"}}), Error);
  EXPECT_THROW(slo_from_json(nlohmann::json{{"bogus", 1}}), Error);
  EXPECT_THROW(slo_from_json(nlohmann::json{{"confidence", nullptr}}), Error);
  EXPECT_THROW(slo_from_json(nlohmann::json::array()), Error);
}

}  // namespace
}  // namespace tidal
