// The summary of a run, with vLLM's `bench serve` definitions:
//   TPOT per request = (E2E - TTFT) / (output tokens - 1), for requests with
//     more than one output token;
//   ITL: every request's gaps pooled together;
//   mean, median, population std and linearly interpolated percentiles
//     (numpy's defaults) over successful requests;
//   throughputs = totals over successful requests / benchmark duration;
//   goodput = successful requests meeting every given SLO / duration, where
//     a request with at most one output token has TPOT 0.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "request_record.h"

namespace tidal::bench {

struct Stats {  // milliseconds
  double mean = 0, median = 0, std = 0, p90 = 0, p99 = 0;
};

// Stats of values given in seconds; all zero for an empty set (as vLLM).
Stats describe_ms(std::vector<double> values_s);

// numpy.percentile(values, p) with linear interpolation; `sorted` ascending.
double percentile(const std::vector<double>& sorted, double p);

struct GoodputSlo {  // milliseconds
  std::optional<double> ttft_ms, tpot_ms, e2el_ms;
  bool any() const { return ttft_ms || tpot_ms || e2el_ms; }
};

// Parses "ttft:MS tpot:MS e2el:MS" items (any subset).
GoodputSlo parse_goodput(const std::vector<std::string>& items);

// TPOT of one successful request in seconds (0 when it had <= 1 output token).
double tpot_s(const RequestRecord& r);

bool meets_slo(const RequestRecord& r, const GoodputSlo& slo);

// Output tokens and requests in flight, per whole second since the first send.
struct SecondBucket {
  double output_tokens = 0;
  int concurrent_requests = 0;
};
std::vector<SecondBucket> per_second(const std::vector<RequestRecord>& records);

struct Summary {
  int completed = 0;
  int failed = 0;
  double duration_s = 0;
  long long total_input = 0;
  long long total_output = 0;
  double request_throughput = 0;
  std::optional<double> request_goodput;  // only with SLOs
  double output_throughput = 0;
  double total_token_throughput = 0;
  double max_output_tokens_per_s = 0;
  int max_concurrent_requests = 0;
  Stats ttft, tpot, itl, e2el;
  std::map<std::string, int> errors;  // failed requests by error message
};

Summary summarize(const std::vector<RequestRecord>& records, double duration_s, const GoodputSlo& slo);

}  // namespace tidal::bench
