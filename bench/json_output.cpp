#include "json_output.h"

#include <fstream>
#include <stdexcept>

namespace tidal::bench {

namespace {

void add_stats(nlohmann::json& j, const std::string& metric, const Stats& st) {
  j["mean_" + metric + "_ms"] = st.mean;
  j["median_" + metric + "_ms"] = st.median;
  j["std_" + metric + "_ms"] = st.std;
  j["p90_" + metric + "_ms"] = st.p90;
  j["p99_" + metric + "_ms"] = st.p99;
}

nlohmann::json summary_json(const Summary& s) {
  nlohmann::json j = {
      {"duration", s.duration_s},
      {"completed", s.completed},
      {"failed", s.failed},
      {"total_input_tokens", s.total_input},
      {"total_output_tokens", s.total_output},
      {"request_throughput", s.request_throughput},
      {"request_goodput", s.request_goodput ? nlohmann::json(*s.request_goodput) : nlohmann::json()},
      {"output_throughput", s.output_throughput},
      {"total_token_throughput", s.total_token_throughput},
      {"max_output_tokens_per_s", s.max_output_tokens_per_s},
      {"max_concurrent_requests", s.max_concurrent_requests},
      {"errors", s.errors},
  };
  add_stats(j, "ttft", s.ttft);
  add_stats(j, "tpot", s.tpot);
  add_stats(j, "itl", s.itl);
  add_stats(j, "e2el", s.e2el);
  return j;
}

nlohmann::json record_json(const RequestRecord& r) {
  nlohmann::json j = {
      {"index", r.index},
      {"success", r.success},
      {"error", r.error},
      {"prompt_len", r.prompt_len},
      {"expected_output_len", r.expected_output_len},
      {"input_tokens", r.input_tokens()},
      {"output_tokens", r.output_tokens()},
      {"output_tokens_source", r.output_tokens_source()},
      {"finish_reason", r.finish_reason},
      {"content_chunks", r.content_chunks},
      {"usage", r.usage ? nlohmann::json{{"prompt_tokens", r.usage->prompt_tokens},
                                         {"completion_tokens", r.usage->completion_tokens}}
                        : nlohmann::json()},
      {"start_s", r.start_s},
      {"ttft_s", r.ttft_s},
      {"latency_s", r.latency_s},
      {"tpot_s", r.success ? nlohmann::json(tpot_s(r)) : nlohmann::json()},
      {"itl_s", r.itl_s},
      {"generated_text", r.generated_text},
      {"prompt_token_ids", r.prompt_token_ids ? nlohmann::json(*r.prompt_token_ids) : nlohmann::json()},
      {"output_token_ids", r.output_token_ids ? nlohmann::json(*r.output_token_ids) : nlohmann::json()},
  };
  return j;
}

}  // namespace

void write_json(const std::string& path, const nlohmann::json& config, const Summary& s,
                const std::vector<RequestRecord>& records) {
  nlohmann::json requests = nlohmann::json::array();
  for (const auto& r : records) requests.push_back(record_json(r));
  const nlohmann::json doc = {{"config", config}, {"summary", summary_json(s)}, {"requests", requests}};
  std::ofstream out(path);
  if (!out) throw std::runtime_error("cannot write " + path);
  // Generated text may hold invalid UTF-8 (a token split mid-character);
  // replace it rather than fail the whole report.
  out << doc.dump(1, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
  if (!out) throw std::runtime_error("cannot write " + path);
}

}  // namespace tidal::bench
