// tidal-bench: measures an OpenAI-compatible server the way vLLM's
// `bench serve` does (TTFT, TPOT, ITL, E2E latency, throughput, goodput).
#include <CLI/CLI.hpp>
#include <cmath>
#include <ctime>
#include <iostream>
#include <limits>
#include <memory>
#include <random>

#include "arrival.h"
#include "dataset.h"
#include "json_output.h"
#include "metrics.h"
#include "plot.h"
#include "report.h"
#include "runner.h"
#include "server_tokenizer.h"

namespace tb = tidal::bench;

namespace {

struct Options {
  std::string base_url = "http://127.0.0.1:8000";
  std::string model;
  std::string endpoint = "completions";
  std::string dataset = "random";
  std::string dataset_path;
  size_t num_prompts = 1000;
  tb::RandomDatasetOptions random;
  std::optional<int> sharegpt_output_len;
  int jsonl_output_len = 256;
  std::string request_rate = "inf";
  double burstiness = 1.0;
  std::optional<int> max_concurrency;
  std::string ramp_up_strategy;
  double ramp_up_start_rps = 0, ramp_up_end_rps = 0;
  bool trace_replay = false;
  double trace_speedup = 1.0;
  uint64_t seed = 0;
  bool ignore_eos = false;
  std::string extra_body;
  std::vector<std::string> goodput;
  int num_warmups = 0;
  int ready_check_timeout_s = 600;
  int timeout_s = 600;
  std::string json_path, plot_path, save_dataset_path;
  bool disable_progress = false;
  std::string prompt_format = "ids";
  std::string tokenize_path = "/tokenize", detokenize_path = "/detokenize";
};

double parse_rate(const std::string& s) {
  if (s == "inf") return std::numeric_limits<double>::infinity();
  size_t used = 0;
  const double r = std::stod(s, &used);
  if (used != s.size() || !(r > 0)) throw std::invalid_argument("--request-rate must be a positive number or inf");
  return r;
}

tb::TextCodec server_codec(const Options& o, const tb::ServerUrl& url) {
  auto tokenizer = std::make_shared<tb::ServerTokenizer>(url, o.model, o.tokenize_path, o.detokenize_path);
  return {[tokenizer](const std::string& text) { return tokenizer->tokenize(text); },
          [tokenizer](const std::vector<int32_t>& ids) { return tokenizer->detokenize(ids); }};
}

std::vector<tb::SampleRequest> load_samples(const Options& o, const tb::ServerUrl& url, tb::Endpoint endpoint,
                                            std::mt19937_64& rng) {
  if (o.dataset != "random" && o.dataset_path.empty())
    throw std::invalid_argument("--dataset " + o.dataset + " needs --dataset-path");
  std::vector<tb::SampleRequest> samples;
  if (o.dataset == "random")
    samples = tb::random_dataset(o.num_prompts, o.random, rng);
  else if (o.dataset == "burstgpt-csv")
    samples = tb::burstgpt_dataset(o.dataset_path, o.num_prompts, o.random.vocab_size);
  else if (o.dataset == "jsonl")
    samples = tb::jsonl_dataset(o.dataset_path, o.num_prompts, o.jsonl_output_len);
  else
    samples = tb::sharegpt_dataset(o.dataset_path, o.num_prompts, o.sharegpt_output_len, server_codec(o, url), rng);
  // Chat messages are text, and some servers take only text prompts.
  if (o.prompt_format == "text" || endpoint == tb::Endpoint::chat)
    tb::to_text_prompts(samples, server_codec(o, url), o.random.vocab_size, rng);
  return samples;
}

nlohmann::json config_json(const Options& o) {
  char date[32];
  const std::time_t now = std::time(nullptr);
  std::strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&now));
  return {{"date", date},
          {"base_url", o.base_url},
          {"model", o.model},
          {"endpoint", o.endpoint},
          {"dataset", o.dataset},
          {"dataset_path", o.dataset_path},
          {"num_prompts", o.num_prompts},
          {"random_input_len", o.random.input_len},
          {"random_output_len", o.random.output_len},
          {"random_range_ratio", o.random.range_ratio},
          {"prompt_format", o.prompt_format},
          {"request_rate", o.request_rate},
          {"burstiness", o.burstiness},
          {"max_concurrency", o.max_concurrency ? nlohmann::json(*o.max_concurrency) : nlohmann::json()},
          {"ramp_up_strategy", o.ramp_up_strategy},
          {"trace_replay", o.trace_replay},
          {"seed", o.seed},
          {"ignore_eos", o.ignore_eos},
          {"goodput", o.goodput}};
}

// For requests whose output count is not known otherwise (see
// RequestRecord::output_tokens), vLLM tokenizes the generated text; here the
// server's own tokenizer does it. Without one, content chunks are counted.
void count_output_without_usage(const Options& o, const tb::ServerUrl& url, std::vector<tb::RequestRecord>& records) {
  const tb::ServerTokenizer tokenizer(url, o.model, o.tokenize_path, o.detokenize_path);
  for (auto& r : records) {
    if (!r.needs_retokenizing()) continue;
    try {
      r.retokenized_output = static_cast<int>(tokenizer.tokenize(r.generated_text).size());
    } catch (const std::exception& e) {
      std::cerr << "tidal-bench: the server reports no usage and cannot tokenize (" << e.what()
                << "); output tokens are counted as content chunks\n";
      return;
    }
  }
}

tb::RunOptions run_options(const Options& o, const tb::ServerUrl& url) {
  tb::RunOptions run;
  run.url = url;
  run.body.endpoint = o.endpoint == "chat" ? tb::Endpoint::chat : tb::Endpoint::completions;
  run.body.model = o.model;
  run.body.ignore_eos = o.ignore_eos;
  if (!o.extra_body.empty()) {
    run.body.extra_body = nlohmann::json::parse(o.extra_body, nullptr, /*allow_exceptions=*/false);
    if (!run.body.extra_body.is_object()) throw std::invalid_argument("--extra-body must be a JSON object");
  }
  run.max_concurrency = o.max_concurrency;
  run.idle_timeout = std::chrono::seconds(o.timeout_s);
  return run;
}

// Send offsets for every request; prints the traffic lines vLLM prints.
std::vector<double> schedule(const Options& o, const std::vector<tb::SampleRequest>& samples, tb::ReportContext& ctx,
                             std::mt19937_64& rng) {
  if (o.trace_replay) {
    std::vector<double> stamps;
    for (const auto& s : samples) {
      if (!s.timestamp_s) throw std::invalid_argument("--trace-replay needs a timestamp on every request");
      stamps.push_back(*s.timestamp_s);
    }
    std::vector<double> offsets = tb::trace_offsets(stamps, o.trace_speedup);
    std::cout << "Traffic: trace replay of " << samples.size() << " requests over " << offsets.back()
              << " s (speedup " << o.trace_speedup << ")\n";
    return offsets;
  }
  tb::ArrivalOptions arrival;
  arrival.request_rate = parse_rate(o.request_rate);
  arrival.burstiness = o.burstiness;
  if (o.ramp_up_strategy == "linear") {
    arrival.ramp = tb::LinearRamp{o.ramp_up_start_rps, o.ramp_up_end_rps};
    std::cout << "Traffic ramp-up strategy: linear, " << o.ramp_up_start_rps << " -> " << o.ramp_up_end_rps
              << " RPS\n";
  } else {
    std::cout << "Traffic request rate: " << o.request_rate << "\n";
    if (!std::isinf(arrival.request_rate)) ctx.request_rate = arrival.request_rate;
  }
  std::cout << "Burstiness factor: " << o.burstiness
            << (o.burstiness == 1.0 ? " (Poisson process)" : " (Gamma distribution)") << "\n";
  return tb::arrival_offsets(samples.size(), arrival, rng);
}

int run(const Options& o) {
  const tb::ServerUrl url = tb::parse_server_url(o.base_url);
  const tb::RunOptions run = run_options(o, url);
  const tb::GoodputSlo slo = tb::parse_goodput(o.goodput);

  std::mt19937_64 data_rng(o.seed);
  std::mt19937_64 arrival_rng(o.seed ^ 0x9e3779b97f4a7c15ULL);  // independent of how much the dataset drew
  const std::vector<tb::SampleRequest> samples = load_samples(o, url, run.body.endpoint, data_rng);
  if (samples.empty()) throw std::runtime_error("the dataset produced no requests");
  if (!o.save_dataset_path.empty()) {
    tb::write_jsonl_dataset(o.save_dataset_path, samples);
    std::cout << "Wrote " << samples.size() << " requests to " << o.save_dataset_path << "\n";
    return 0;
  }

  tb::ReportContext ctx;
  ctx.max_concurrency = o.max_concurrency;
  const std::vector<double> offsets = schedule(o, samples, ctx, arrival_rng);
  std::cout << "Maximum request concurrency: " << (o.max_concurrency ? std::to_string(*o.max_concurrency) : "None")
            << std::endl;

  if (o.ready_check_timeout_s > 0) {
    std::cout << "Starting initial single prompt test run..." << std::endl;
    const tb::RequestRecord probe =
        tb::wait_until_ready(samples[0], run, std::chrono::seconds(o.ready_check_timeout_s));
    if (!probe.success) {
      std::cerr << "tidal-bench: the initial test request failed: " << probe.error << "\n";
      return 1;
    }
  }
  if (o.num_warmups > 0) {
    std::cout << "Warming up with " << o.num_warmups << " requests..." << std::endl;
    tb::Progress silent(0, false);
    tb::run_benchmark(std::vector<tb::SampleRequest>(o.num_warmups, samples[0]),
                      std::vector<double>(o.num_warmups, 0.0), run, silent);
  }

  std::cout << "Starting main benchmark run..." << std::endl;
  tb::Progress progress(samples.size(), !o.disable_progress);
  tb::RunResult result = tb::run_benchmark(samples, offsets, run, progress);
  progress.finish();

  count_output_without_usage(o, url, result.records);
  const tb::Summary summary = tb::summarize(result.records, result.duration_s, slo);
  tb::print_report(std::cout, summary, ctx);
  if (!o.json_path.empty()) {
    nlohmann::json config = config_json(o);
    config["start_unix_ms"] = result.start_unix_ms;  // to place the records against server-side logs
    tb::write_json(o.json_path, config, summary, result.records);
  }
  if (!o.plot_path.empty()) {
    const std::string why = tb::write_plot(result.records, o.plot_path);
    if (why.empty())
      std::cout << "Plot written to " << o.plot_path << "\n";
    else
      std::cerr << "tidal-bench: --plot skipped: " << why << "\n";
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  CLI::App app{"tidal-bench: serving benchmark for OpenAI-compatible servers (vLLM bench serve methodology)"};
  app.add_option("--base-url", o.base_url, "server, e.g. http://127.0.0.1:8000 (a trailing /v1 is fine)")
      ->capture_default_str();
  app.add_option("--model", o.model, "model name sent with every request")->required();
  app.add_option("--endpoint", o.endpoint, "API to call")
      ->check(CLI::IsMember({"completions", "chat"}))
      ->capture_default_str();
  app.add_option("--dataset", o.dataset, "where prompts come from")
      ->check(CLI::IsMember({"random", "sharegpt-json", "burstgpt-csv", "jsonl"}))
      ->capture_default_str();
  app.add_option("--dataset-path", o.dataset_path, "file for sharegpt-json, burstgpt-csv and jsonl");
  app.add_option("--num-prompts", o.num_prompts, "requests to send")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--random-input-len", o.random.input_len, "random dataset: prompt tokens")->capture_default_str();
  app.add_option("--random-output-len", o.random.output_len, "random dataset: output tokens")->capture_default_str();
  app.add_option("--random-range-ratio", o.random.range_ratio, "random dataset: lengths vary by +-this fraction")
      ->capture_default_str();
  app.add_option("--random-vocab-size", o.random.vocab_size,
                 "vocabulary size of the served model (random and burstgpt-csv prompts are token ids below it)");
  app.add_option("--sharegpt-output-len", o.sharegpt_output_len, "sharegpt-json: fixed output length");
  app.add_option("--jsonl-output-len", o.jsonl_output_len, "jsonl: output length for lines without output_tokens")
      ->capture_default_str();
  app.add_option("--request-rate", o.request_rate, "requests/s (gamma arrivals), or inf for all at once")
      ->capture_default_str();
  app.add_option("--burstiness", o.burstiness, "gamma shape of inter-arrival times; 1 = Poisson")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--max-concurrency", o.max_concurrency, "at most this many requests in flight")
      ->check(CLI::PositiveNumber);
  app.add_option("--ramp-up-strategy", o.ramp_up_strategy,
                 "linear: rate goes from --ramp-up-start-rps to --ramp-up-end-rps")
      ->check(CLI::IsMember({"linear"}));
  app.add_option("--ramp-up-start-rps", o.ramp_up_start_rps, "ramp start rate")->check(CLI::PositiveNumber);
  app.add_option("--ramp-up-end-rps", o.ramp_up_end_rps, "ramp end rate")->check(CLI::PositiveNumber);
  app.add_flag("--trace-replay", o.trace_replay, "send requests at the dataset's timestamps (burstgpt-csv, jsonl)");
  app.add_option("--trace-speedup", o.trace_speedup, "replay the trace this many times faster")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--seed", o.seed, "seed for datasets and arrivals")->capture_default_str();
  app.add_flag("--ignore-eos", o.ignore_eos, "ask the server to generate exactly max_tokens (vLLM extension)");
  app.add_option("--extra-body", o.extra_body, "JSON object merged into every request body");
  app.add_option("--goodput", o.goodput, "SLOs as ttft:MS tpot:MS e2el:MS; goodput counts requests meeting all");
  app.add_option("--num-warmups", o.num_warmups, "unmeasured requests before the run")->capture_default_str();
  app.add_option("--ready-check-timeout", o.ready_check_timeout_s,
                 "seconds to retry the initial test request while the server starts (0: skip it)")
      ->capture_default_str();
  app.add_option("--timeout", o.timeout_s, "seconds a request may make no progress before it fails")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--json", o.json_path, "write the summary and every request's record here");
  app.add_option("--plot", o.plot_path, "draw latency CDFs and throughput over time into this PNG (needs gnuplot)");
  app.add_option("--save-dataset", o.save_dataset_path,
                 "write the prepared requests as jsonl (for --dataset jsonl, e.g. to send several servers the same "
                 "prompts) and exit without benchmarking");
  app.add_flag("--disable-progress", o.disable_progress, "no progress bar");
  app.add_option("--prompt-format", o.prompt_format,
                 "send random/burstgpt prompts as token ids, or as text made with the server's tokenizer "
                 "(vLLM's way; for servers that take only text; always text on chat)")
      ->check(CLI::IsMember({"ids", "text"}))
      ->capture_default_str();
  app.add_option("--tokenize-path", o.tokenize_path,
                 "server route for text -> tokens (sharegpt-json, text prompts); llama-cpp-python: /extras/tokenize")
      ->capture_default_str();
  app.add_option("--detokenize-path", o.detokenize_path,
                 "server route for tokens -> text (text prompts); llama-cpp-python: /extras/detokenize")
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  if (!o.ramp_up_strategy.empty() && (o.ramp_up_start_rps <= 0 || o.ramp_up_end_rps <= 0)) {
    std::cerr << "tidal-bench: --ramp-up-strategy needs --ramp-up-start-rps and --ramp-up-end-rps\n";
    return 2;
  }
  try {
    return run(o);
  } catch (const std::exception& e) {
    std::cerr << "tidal-bench: " << e.what() << "\n";
    return 2;
  }
}
