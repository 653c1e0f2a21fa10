// Metric math on hand-made timelines; expected values computed with numpy
// the way vLLM's calculate_metrics does.
#include <gtest/gtest.h>

#include "metrics.h"

using namespace tidal::bench;

namespace {

RequestRecord done(double start, double ttft, std::vector<double> itl, int prompt_tokens, int completion_tokens) {
  RequestRecord r;
  r.success = true;
  r.start_s = start;
  r.ttft_s = ttft;
  r.latency_s = ttft;
  for (double g : itl) r.latency_s += g;
  r.itl_s = std::move(itl);
  r.content_chunks = 1 + static_cast<int>(r.itl_s.size());
  r.usage = Usage{prompt_tokens, completion_tokens};
  return r;
}

// R0: TTFT 100 ms, gaps 20/30/50 ms, 4 tokens -> E2E 200 ms, TPOT 100/3 ms.
// R1: TTFT 300 ms, gap 40 ms, 2 tokens -> E2E 340 ms, TPOT 40 ms.
// R2: TTFT 50 ms, 1 token -> no TPOT (0 for goodput).
// R3: failed.
std::vector<RequestRecord> timeline() {
  std::vector<RequestRecord> rs = {done(0.0, 0.100, {0.020, 0.030, 0.050}, 10, 4), done(0.5, 0.300, {0.040}, 20, 2),
                                   done(1.0, 0.050, {}, 30, 1)};
  RequestRecord failed;
  failed.error = "HTTP 500: overloaded";
  rs.push_back(failed);
  return rs;
}

constexpr double kTol = 1e-9;

}  // namespace

TEST(Metrics, PercentileIsNumpyLinear) {
  const std::vector<double> v = {1, 2, 3, 4, 10};
  EXPECT_NEAR(percentile(v, 99), 9.76, kTol);
  EXPECT_NEAR(percentile(v, 50), 3, kTol);
  EXPECT_NEAR(percentile(v, 0), 1, kTol);
  EXPECT_NEAR(percentile(v, 100), 10, kTol);
  EXPECT_NEAR(percentile({7}, 90), 7, kTol);
}

TEST(Metrics, EmptyStatsAreZero) {
  const Stats s = describe_ms({});
  EXPECT_EQ(s.mean, 0);
  EXPECT_EQ(s.p99, 0);
}

TEST(Metrics, PerRequestTpot) {
  const auto rs = timeline();
  EXPECT_NEAR(tpot_s(rs[0]), 0.1 / 3, kTol);
  EXPECT_NEAR(tpot_s(rs[1]), 0.04, kTol);
  EXPECT_EQ(tpot_s(rs[2]), 0.0);
}

TEST(Metrics, TpotUsesUsageTokensNotChunks) {
  // Two chunks carrying 5 tokens between them: TPOT divides by 4, not 1.
  RequestRecord r = done(0, 0.1, {0.4}, 3, 5);
  EXPECT_NEAR(tpot_s(r), 0.1, kTol);
}

TEST(Metrics, SummaryOfHandMadeTimeline) {
  const Summary s = summarize(timeline(), 2.0, GoodputSlo{});
  EXPECT_EQ(s.completed, 3);
  EXPECT_EQ(s.failed, 1);
  EXPECT_EQ(s.errors.at("HTTP 500: overloaded"), 1);
  EXPECT_EQ(s.total_input, 60);
  EXPECT_EQ(s.total_output, 7);
  EXPECT_NEAR(s.request_throughput, 1.5, kTol);
  EXPECT_NEAR(s.output_throughput, 3.5, kTol);
  EXPECT_NEAR(s.total_token_throughput, 33.5, kTol);
  EXPECT_FALSE(s.request_goodput);

  EXPECT_NEAR(s.ttft.mean, 150.0, kTol);
  EXPECT_NEAR(s.ttft.median, 100.0, kTol);
  EXPECT_NEAR(s.ttft.std, 108.01234497346434, 1e-6);
  EXPECT_NEAR(s.ttft.p90, 260.0, kTol);
  EXPECT_NEAR(s.ttft.p99, 296.0, kTol);

  EXPECT_NEAR(s.itl.mean, 35.0, kTol);
  EXPECT_NEAR(s.itl.median, 35.0, kTol);
  EXPECT_NEAR(s.itl.std, 11.180339887498949, 1e-6);
  EXPECT_NEAR(s.itl.p90, 47.0, kTol);
  EXPECT_NEAR(s.itl.p99, 49.7, 1e-6);

  EXPECT_NEAR(s.tpot.mean, 36.66666666666667, 1e-6);
  EXPECT_NEAR(s.tpot.std, 3.333333333333332, 1e-6);
  EXPECT_NEAR(s.tpot.p90, 39.333333333333336, 1e-6);
  EXPECT_NEAR(s.tpot.p99, 39.93333333333333, 1e-6);

  EXPECT_NEAR(s.e2el.mean, 196.66666666666666, 1e-6);
  EXPECT_NEAR(s.e2el.median, 200.0, 1e-6);
  EXPECT_NEAR(s.e2el.std, 118.41546445554408, 1e-6);
  EXPECT_NEAR(s.e2el.p99, 337.2, 1e-6);

  // Chunks at 0.10 0.12 0.15 0.20 0.80 0.84 fall in second 0, 1.05 in second 1.
  EXPECT_EQ(s.max_output_tokens_per_s, 6);
  EXPECT_EQ(s.max_concurrent_requests, 2);
}

TEST(Metrics, GoodputCountsRequestsMeetingEverySlo) {
  auto goodput = [](std::vector<std::string> items) {
    return *summarize(timeline(), 2.0, parse_goodput(items)).request_goodput;
  };
  EXPECT_NEAR(goodput({"ttft:120"}), 1.0, kTol);               // R0, R2
  EXPECT_NEAR(goodput({"ttft:100"}), 1.0, kTol);               // exactly at the SLO passes
  EXPECT_NEAR(goodput({"ttft:120", "tpot:35"}), 1.0, kTol);    // R0 (33.3 ms), R2 (TPOT 0)
  EXPECT_NEAR(goodput({"ttft:120", "tpot:30"}), 0.5, kTol);    // R2 only
  EXPECT_NEAR(goodput({"e2el:100"}), 0.5, kTol);               // R2 only
  EXPECT_NEAR(goodput({"tpot:50"}), 1.5, kTol);                // all three
  EXPECT_NEAR(goodput({"ttft:10"}), 0.0, kTol);
}

TEST(Metrics, ParseGoodput) {
  const GoodputSlo slo = parse_goodput({"ttft:500", "e2el:2500.5"});
  EXPECT_EQ(*slo.ttft_ms, 500);
  EXPECT_EQ(*slo.e2el_ms, 2500.5);
  EXPECT_FALSE(slo.tpot_ms);
  EXPECT_THROW(parse_goodput({"ttft"}), std::invalid_argument);
  EXPECT_THROW(parse_goodput({"latency:5"}), std::invalid_argument);
  EXPECT_THROW(parse_goodput({"tpot:5ms"}), std::invalid_argument);
  EXPECT_THROW(parse_goodput({"tpot:-1"}), std::invalid_argument);
}

TEST(Metrics, PerSecondBuckets) {
  const auto b = per_second(timeline());
  ASSERT_EQ(b.size(), 3u);  // ceil(1.05 - 0) + 1
  EXPECT_EQ(b[0].output_tokens, 6);
  EXPECT_EQ(b[1].output_tokens, 1);
  EXPECT_EQ(b[2].output_tokens, 0);
  EXPECT_EQ(b[0].concurrent_requests, 2);
  EXPECT_EQ(b[1].concurrent_requests, 1);
}

TEST(Metrics, AllFailed) {
  RequestRecord f;
  f.error = "connect: refused";
  const Summary s = summarize({f, f}, 1.0, parse_goodput({"ttft:1"}));
  EXPECT_EQ(s.completed, 0);
  EXPECT_EQ(s.failed, 2);
  EXPECT_EQ(s.errors.at("connect: refused"), 2);
  EXPECT_EQ(*s.request_goodput, 0.0);
  EXPECT_EQ(s.ttft.mean, 0.0);
}
