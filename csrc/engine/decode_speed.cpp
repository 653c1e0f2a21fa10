#include "engine/decode_speed.h"

#include <chrono>

#include "core/error.h"
#include "engine/engine.h"

namespace tidal {

namespace {

using Clock = std::chrono::steady_clock;

// Runs one greedy request to the end; returns the seconds from its first
// token (after the prefill step) to its last, and how many tokens came after the first.
std::pair<double, int> decode_once(LLMEngine& engine, const std::vector<int32_t>& prompt, int tokens) {
  Request r;
  r.id = "decode";
  r.prompt = prompt;
  r.sampling.temperature = 0.0f;
  r.sampling.max_tokens = tokens;
  r.sampling.ignore_eos = true;
  engine.add_request(std::move(r));
  int generated = 0;
  Clock::time_point first;
  while (engine.has_unfinished()) {
    for (const RequestOutput& out : engine.step()) {
      if (!out.error.empty()) throw Error(ErrorCode::kInternal, out.error);  // a time of nothing measured
      for (const CompletionDelta& d : out.deltas) {
        if (generated == 0 && !d.token_ids.empty()) first = Clock::now();
        generated += int(d.token_ids.size());
      }
    }
  }
  return {std::chrono::duration<double>(Clock::now() - first).count(), generated - 1};
}

}  // namespace

double measure_decode_tok_s(const Model& model, const Tokenizer& tokenizer, Backend& backend,
                            const std::vector<int32_t>& prompt, int tokens) {
  if (tokens < 2) throw Error(ErrorCode::kInvalidArgument, "decode timing needs at least 2 generated tokens");
  EngineConfig config;
  // Exactly the blocks one sequence needs; no prefix cache, so the timed
  // run does the same work as the warm-up.
  config.num_kv_blocks = int((prompt.size() + size_t(tokens) + config.block_size - 1) / config.block_size);
  config.enable_prefix_caching = false;
  config.scheduler.max_num_seqs = 1;
  LLMEngine engine(model, tokenizer, backend, config);
  decode_once(engine, prompt, tokens);
  const auto [seconds, decoded] = decode_once(engine, prompt, tokens);
  return double(decoded) / seconds;
}

}  // namespace tidal
