#include "report.h"

#include <cstdio>
#include <string>

namespace tidal::bench {

namespace {

std::string line(const std::string& label, const std::string& value) {
  char buf[128];
  std::snprintf(buf, sizeof buf, "%-40s %-10s\n", label.c_str(), value.c_str());
  return buf;
}

std::string num(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.2f", v);
  return buf;
}

std::string banner(const std::string& title, char fill) {
  const size_t width = 50;
  const size_t pad = title.size() >= width ? 0 : width - title.size();
  return std::string(pad / 2, fill) + title + std::string(pad - pad / 2, fill) + "\n";
}

void stats_block(std::ostream& out, const std::string& header, const std::string& name, const Stats& st) {
  out << banner(header, '-');
  out << line("Mean " + name + " (ms):", num(st.mean));
  out << line("Median " + name + " (ms):", num(st.median));
  out << line("Std " + name + " (ms):", num(st.std));
  out << line("P90 " + name + " (ms):", num(st.p90));
  out << line("P99 " + name + " (ms):", num(st.p99));
}

}  // namespace

void print_report(std::ostream& out, const Summary& s, const ReportContext& ctx) {
  out << banner(" Serving Benchmark Result ", '=');
  out << line("Successful requests:", std::to_string(s.completed));
  out << line("Failed requests:", std::to_string(s.failed));
  if (ctx.max_concurrency) out << line("Maximum request concurrency:", std::to_string(*ctx.max_concurrency));
  if (ctx.request_rate) out << line("Request rate configured (RPS):", num(*ctx.request_rate));
  out << line("Benchmark duration (s):", num(s.duration_s));
  out << line("Total input tokens:", std::to_string(s.total_input));
  out << line("Total generated tokens:", std::to_string(s.total_output));
  out << line("Request throughput (req/s):", num(s.request_throughput));
  if (s.request_goodput) out << line("Request goodput (req/s):", num(*s.request_goodput));
  out << line("Output token throughput (tok/s):", num(s.output_throughput));
  out << line("Peak output token throughput (tok/s):", num(s.max_output_tokens_per_s));
  out << line("Peak concurrent requests:", std::to_string(s.max_concurrent_requests));
  out << line("Total Token throughput (tok/s):", num(s.total_token_throughput));
  stats_block(out, "Time to First Token", "TTFT", s.ttft);
  stats_block(out, "Time per Output Token (excl. 1st token)", "TPOT", s.tpot);
  stats_block(out, "Inter-token Latency", "ITL", s.itl);
  stats_block(out, "End-to-end Latency", "E2EL", s.e2el);
  if (!s.errors.empty()) {
    out << banner("Errors", '-');
    for (const auto& [error, count] : s.errors) out << count << " x " << error.substr(0, 300) << "\n";
  }
  out << std::string(50, '=') << "\n";
}

}  // namespace tidal::bench
