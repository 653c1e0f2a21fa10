// `tidal generate`: runs one or more prompts through the engine as one
// continuous batch and prints the results in prompt order. Under mpirun
// (--comm mpi) only rank 0 prints; the other ranks serve their shards.
#include <chrono>
#include <cstdio>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/model_options.h"
#include "core/error.h"

namespace tidal {

namespace {

struct GenerateOptions {
  ModelOptions model;
  ParallelConfig parallel;
  std::vector<std::string> prompts;
  int max_tokens = 64;
  float temperature = 1.0f;
  float top_p = 1.0f;
  int top_k = 0;
  float min_p = 0.0f;
  int64_t seed = -1;
  std::vector<std::string> stop;
  bool ignore_eos = false;
  bool json = false;
  bool logprobs = false;
  bool stats = false;
};

struct Result {
  std::vector<int32_t> prompt_ids;
  std::vector<int32_t> token_ids;
  std::vector<float> logprobs;
  std::string text;
  std::string finish_reason;
};

void print_stats(const EngineStats& s, const char* prefix) {
  std::fprintf(stderr,
               "%ssteps=%llu prompt_tokens=%llu generation_tokens=%llu preemptions=%llu "
               "prefix_queries=%llu prefix_hits=%llu kv_blocks=%d used_blocks=%d kv_dtype=%s kv_bytes_per_token=%zu "
               "kv_tokens=%lld\n",
               prefix, (unsigned long long)s.steps, (unsigned long long)s.prompt_tokens,
               (unsigned long long)s.generation_tokens, (unsigned long long)s.num_preemptions,
               (unsigned long long)s.prefix.queries, (unsigned long long)s.prefix.hits, s.num_blocks,
               s.num_used_blocks, std::string(dtype_name(s.kv_cache_dtype)).c_str(), s.kv_bytes_per_token,
               (long long)s.num_blocks * s.block_size);
}

void run_generate(const GenerateOptions& o) {
  EngineSetup setup = start_engine(o.model, o.parallel);
  if (!setup.engine) return;  // an MPI worker rank: its part is done
  LLMEngine& engine = *setup.engine;
  const LoadedModel& m = setup.model.loaded;

  std::vector<Result> results(o.prompts.size());
  for (size_t i = 0; i < o.prompts.size(); ++i) {
    Request r;
    r.id = std::to_string(i);
    r.prompt = m.tokenizer->encode(o.prompts[i], m.tokenizer->add_bos_by_default());
    r.sampling.max_tokens = o.max_tokens;
    r.sampling.temperature = o.temperature;
    r.sampling.top_p = o.top_p;
    r.sampling.top_k = o.top_k;
    r.sampling.min_p = o.min_p;
    if (o.seed >= 0) r.sampling.seed = uint64_t(o.seed);
    r.sampling.stop = o.stop;
    r.sampling.ignore_eos = o.ignore_eos;
    if (o.logprobs) r.sampling.logprobs = 0;
    results[i].prompt_ids = r.prompt;
    engine.add_request(std::move(r));
  }
  // Throughput for --stats: the prefill phase lasts until every prompt has
  // its first token, decoding from then to the end.
  using Clock = std::chrono::steady_clock;
  const auto start = Clock::now();
  auto prefilled = start;
  size_t awaiting_first = results.size();
  while (engine.has_unfinished()) {
    for (const RequestOutput& out : engine.step()) {
      // A batch run has no use for the other prompts' results alone.
      if (!out.error.empty()) throw Error(ErrorCode::kInternal, out.error);
      Result& res = results[std::stoul(out.request_id)];
      if (res.token_ids.empty() && --awaiting_first == 0) prefilled = Clock::now();
      for (const CompletionDelta& d : out.deltas) {
        res.token_ids.insert(res.token_ids.end(), d.token_ids.begin(), d.token_ids.end());
        res.logprobs.insert(res.logprobs.end(), d.logprobs.begin(), d.logprobs.end());
        res.text += d.text;
        if (d.finish) res.finish_reason = finish_reason_name(*d.finish);
      }
    }
  }
  const auto end = Clock::now();

  for (const Result& res : results) {
    if (o.json) {
      nlohmann::json j = {{"prompt_ids", res.prompt_ids},
                          {"token_ids", res.token_ids},
                          {"text", res.text},
                          {"finish_reason", res.finish_reason}};
      if (o.logprobs) j["logprobs"] = res.logprobs;
      std::cout << j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
    } else {
      std::cout << res.text << "\n";
    }
  }
  if (o.stats) {
    const EngineStats s = engine.stats();
    print_stats(s, "");
    for (size_t i = 0; i < s.replicas.size(); ++i) {
      print_stats(s.replicas[i], ("replica " + std::to_string(i) + ": ").c_str());
    }
    size_t prompt_tokens = 0, decode_tokens = 0;
    for (const Result& res : results) {
      prompt_tokens += res.prompt_ids.size();
      decode_tokens += res.token_ids.empty() ? 0 : res.token_ids.size() - 1;
    }
    const double prefill_s = std::chrono::duration<double>(prefilled - start).count();
    const double decode_s = std::chrono::duration<double>(end - prefilled).count();
    std::fprintf(stderr, "prefill: %zu tokens in %.3f s (%.1f tok/s); decode: %zu tokens in %.3f s (%.1f tok/s)\n",
                 prompt_tokens, prefill_s, prompt_tokens / prefill_s, decode_tokens, decode_s,
                 decode_s > 0 ? decode_tokens / decode_s : 0.0);
  }
}

}  // namespace

void register_generate_command(CLI::App& app) {
  auto o = std::make_shared<GenerateOptions>();
  CLI::App* cmd = app.add_subcommand("generate", "generate text for one or more prompts (one continuous batch)");
  add_model_options(*cmd, o->model);
  add_parallel_options(*cmd, o->parallel);
  cmd->add_option("-p,--prompt", o->prompts, "prompt text (repeat for a batch)")->required();
  cmd->add_option("-n,--max-tokens", o->max_tokens, "tokens to generate per prompt")->check(CLI::Range(1, 1 << 20));
  cmd->add_option("--temperature", o->temperature, "0 = greedy")->check(CLI::Range(0.0, 100.0));
  cmd->add_option("--top-p", o->top_p)->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--top-k", o->top_k)->check(CLI::Range(-1, 1 << 30));
  cmd->add_option("--min-p", o->min_p)->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--seed", o->seed, "random seed (default: nondeterministic per run)");
  cmd->add_option("--stop", o->stop, "stop string (repeatable)");
  cmd->add_flag("--ignore-eos", o->ignore_eos, "keep generating past end-of-sequence");
  cmd->add_flag("--json", o->json, "print one JSON object per prompt: prompt_ids, token_ids, text");
  cmd->add_flag("--logprobs", o->logprobs, "with --json: add each generated token's log-probability");
  cmd->add_flag("--stats", o->stats, "print engine counters and prefill/decode throughput to stderr at the end");
  cmd->callback([o] { run_generate(*o); });
}

}  // namespace tidal
