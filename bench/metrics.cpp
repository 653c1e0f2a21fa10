#include "metrics.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <stdexcept>

namespace tidal::bench {

double percentile(const std::vector<double>& sorted, double p) {
  if (sorted.empty()) return 0;
  const double rank = p / 100.0 * static_cast<double>(sorted.size() - 1);
  const size_t lo = static_cast<size_t>(std::floor(rank));
  const size_t hi = std::min(lo + 1, sorted.size() - 1);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (rank - static_cast<double>(lo));
}

Stats describe_ms(std::vector<double> values_s) {
  Stats s;
  if (values_s.empty()) return s;
  std::sort(values_s.begin(), values_s.end());
  const double n = static_cast<double>(values_s.size());
  const double mean = std::accumulate(values_s.begin(), values_s.end(), 0.0) / n;
  double sq = 0;
  for (double v : values_s) sq += (v - mean) * (v - mean);
  s.mean = mean * 1000;
  s.std = std::sqrt(sq / n) * 1000;
  s.median = percentile(values_s, 50) * 1000;
  s.p90 = percentile(values_s, 90) * 1000;
  s.p99 = percentile(values_s, 99) * 1000;
  return s;
}

GoodputSlo parse_goodput(const std::vector<std::string>& items) {
  GoodputSlo slo;
  for (const std::string& item : items) {
    const size_t colon = item.find(':');
    if (colon == std::string::npos) throw std::invalid_argument("goodput item '" + item + "' is not NAME:MS");
    const std::string name = item.substr(0, colon);
    double ms = 0;
    try {
      size_t used = 0;
      ms = std::stod(item.substr(colon + 1), &used);
      if (used != item.size() - colon - 1) throw std::invalid_argument("trailing characters");
    } catch (const std::logic_error&) {
      throw std::invalid_argument("goodput item '" + item + "': bad number of milliseconds");
    }
    if (ms < 0) throw std::invalid_argument("goodput item '" + item + "': milliseconds must be >= 0");
    if (name == "ttft")
      slo.ttft_ms = ms;
    else if (name == "tpot")
      slo.tpot_ms = ms;
    else if (name == "e2el")
      slo.e2el_ms = ms;
    else
      throw std::invalid_argument("goodput metric '" + name + "' is not one of ttft, tpot, e2el");
  }
  return slo;
}

double tpot_s(const RequestRecord& r) {
  const int n = r.output_tokens();
  return n > 1 ? (r.latency_s - r.ttft_s) / (n - 1) : 0.0;
}

// Compared in seconds, as vLLM does, so a value exactly at the SLO passes.
bool meets_slo(const RequestRecord& r, const GoodputSlo& slo) {
  if (slo.ttft_ms && r.ttft_s > *slo.ttft_ms / 1000) return false;
  if (slo.tpot_ms && tpot_s(r) > *slo.tpot_ms / 1000) return false;
  if (slo.e2el_ms && r.latency_s > *slo.e2el_ms / 1000) return false;
  return true;
}

std::vector<SecondBucket> per_second(const std::vector<RequestRecord>& records) {
  double first = INFINITY, last = -INFINITY;
  for (const auto& r : records) {
    if (!r.success) continue;
    first = std::min(first, r.start_s);
    last = std::max(last, r.start_s + r.latency_s);
  }
  if (first > last) return {};
  std::vector<SecondBucket> buckets(static_cast<size_t>(std::ceil(last - first)) + 1);
  for (const auto& r : records) {
    if (!r.success) continue;
    // Each content chunk is counted as one token at its arrival, as vLLM does.
    double t = r.start_s + r.ttft_s;
    auto add_token = [&](double at) {
      const auto b = static_cast<size_t>(at - first);
      if (b < buckets.size()) buckets[b].output_tokens += 1;
    };
    add_token(t);
    for (double gap : r.itl_s) add_token(t += gap);
    const auto from = static_cast<size_t>(r.start_s - first);
    const auto to = std::min(static_cast<size_t>(r.start_s + r.latency_s - first), buckets.size() - 1);
    for (size_t b = from; b <= to; ++b) ++buckets[b].concurrent_requests;
  }
  return buckets;
}

Summary summarize(const std::vector<RequestRecord>& records, double duration_s, const GoodputSlo& slo) {
  Summary s;
  s.duration_s = duration_s;
  std::vector<double> ttfts, tpots, itls, e2els;
  int good = 0;
  for (const auto& r : records) {
    if (!r.success) {
      ++s.failed;
      ++s.errors[r.error];
      continue;
    }
    ++s.completed;
    s.total_input += r.input_tokens();
    s.total_output += r.output_tokens();
    ttfts.push_back(r.ttft_s);
    e2els.push_back(r.latency_s);
    if (r.output_tokens() > 1) tpots.push_back(tpot_s(r));
    itls.insert(itls.end(), r.itl_s.begin(), r.itl_s.end());
    if (slo.any() && meets_slo(r, slo)) ++good;
  }
  if (duration_s > 0) {
    s.request_throughput = s.completed / duration_s;
    s.output_throughput = static_cast<double>(s.total_output) / duration_s;
    s.total_token_throughput = static_cast<double>(s.total_input + s.total_output) / duration_s;
    if (slo.any()) s.request_goodput = good / duration_s;
  }
  s.ttft = describe_ms(std::move(ttfts));
  s.tpot = describe_ms(std::move(tpots));
  s.itl = describe_ms(std::move(itls));
  s.e2el = describe_ms(std::move(e2els));
  for (const auto& b : per_second(records)) {
    s.max_output_tokens_per_s = std::max(s.max_output_tokens_per_s, b.output_tokens);
    s.max_concurrent_requests = std::max(s.max_concurrent_requests, b.concurrent_requests);
  }
  return s;
}

}  // namespace tidal::bench
