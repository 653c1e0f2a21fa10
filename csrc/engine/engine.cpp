#include "engine/engine.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <limits>

#include "core/error.h"
#include "engine/model_runner.h"
#include "engine/output_text.h"
#include "parallel/replica_router.h"
#include "parallel/replica_threads.h"

namespace tidal {

namespace {

using Clock = std::chrono::steady_clock;

uint64_t mix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

}  // namespace

// One completion of a request (a request with n > 1 has n of them).
struct Choice {
  Choice(const Tokenizer& tokenizer, const SamplingParams& params, int32_t last_prompt_token)
      : text(tokenizer, params.stop, last_prompt_token) {}
  std::unique_ptr<Sequence> seq;
  OutputText text;
  uint64_t seed = 0;
  bool finished = false;
};

class RequestState {
 public:
  Request request;
  std::vector<std::unique_ptr<Choice>> choices;  // n > 1: the rest are forked after prefill
  int num_finished = 0;
  int completion_tokens = 0;
  int cached_prompt_tokens = 0;
  Clock::time_point arrival = Clock::now();
  double queue_seconds = -1.0;
  bool queue_time_reported = false;
  bool scheduled_once = false;
  size_t replica = 0;
  bool all_done() const { return num_finished == request.sampling.n; }
};

struct LLMEngine::Replica {
  std::unique_ptr<Executor> executor;
  std::unique_ptr<BlockManager> blocks;
  std::unique_ptr<Scheduler> scheduler;
  DType kv_cache_dtype = DType::F32;
  size_t kv_bytes_per_token = 0;
  std::vector<RequestState*> requests;  // unfinished, in arrival order
  uint64_t prompt_tokens = 0, generation_tokens = 0, steps = 0;
  bool up = true;       // false for good once its executor failed
  std::string failure;  // why it went down
};

namespace {

std::vector<std::unique_ptr<Executor>> one_device(const Model& model, Backend& backend) {
  std::vector<std::unique_ptr<Executor>> executors;
  executors.push_back(std::make_unique<ModelRunner>(model, backend));
  return executors;
}

}  // namespace

LLMEngine::LLMEngine(const Model& model, const Tokenizer& tokenizer, Backend& backend, const EngineConfig& config)
    : LLMEngine(model.config, tokenizer, one_device(model, backend), config) {}

LLMEngine::LLMEngine(const ModelConfig& model, const Tokenizer& tokenizer,
                     std::vector<std::unique_ptr<Executor>> executors, const EngineConfig& config)
    : config_(model), tokenizer_(tokenizer), scheduler_config_(config.scheduler), default_seed_(config.default_seed) {
  if (executors.empty()) throw Error(ErrorCode::kInvalidArgument, "an engine needs at least one executor");
  if (scheduler_config_.max_model_len <= 0) scheduler_config_.max_model_len = model.max_seq_len;
  check_kv_cache_dtype(config.kv_cache_dtype);
  for (std::unique_ptr<Executor>& executor : executors) {
    const size_t bytes_per_token = executor->kv_bytes_per_token(config.kv_cache_dtype);
    const size_t block_bytes = bytes_per_token * size_t(config.block_size);
    // A byte budget beyond what max_num_seqs full-length sequences can use
    // would only cost start-up time (the pool is zeroed), so it is capped.
    const int64_t useful = int64_t(scheduler_config_.max_num_seqs) *
                           ((int64_t(scheduler_config_.max_model_len) + config.block_size - 1) / config.block_size);
    const int num_blocks = config.num_kv_blocks > 0
                               ? config.num_kv_blocks
                               : int(std::min<int64_t>(int64_t(config.kv_cache_bytes / block_bytes), useful));
    if (num_blocks < 1) throw Error(ErrorCode::kInvalidArgument, "KV cache too small for one block");
    // A sequence longer than the whole pool could never run; cap the context.
    scheduler_config_.max_model_len = std::min(scheduler_config_.max_model_len, num_blocks * config.block_size);
    executor->allocate_kv_cache(num_blocks, config.block_size, config.kv_cache_dtype);
    auto replica = std::make_unique<Replica>();
    replica->executor = std::move(executor);
    replica->kv_cache_dtype = config.kv_cache_dtype;
    replica->kv_bytes_per_token = bytes_per_token;
    replica->blocks = std::make_unique<BlockManager>(num_blocks, config.block_size, config.enable_prefix_caching);
    replicas_.push_back(std::move(replica));
  }
  for (auto& replica : replicas_) replica->scheduler = std::make_unique<Scheduler>(scheduler_config_, *replica->blocks);
  if (replicas_.size() > 1) threads_ = std::make_unique<ReplicaThreads>(replicas_.size());
}

LLMEngine::~LLMEngine() = default;

void LLMEngine::validate(const Request& r) const {
  auto fail = [](const std::string& msg) { throw Error(ErrorCode::kInvalidArgument, msg); };
  const SamplingParams& p = r.sampling;
  const int max_len = scheduler_config_.max_model_len;
  if (r.prompt.empty()) fail("prompt must contain at least one token");
  for (int32_t id : r.prompt) {
    if (id < 0 || id >= config_.vocab_size) fail("prompt token id " + std::to_string(id) + " is out of vocabulary");
  }
  if (p.max_tokens < 1) fail("max_tokens must be at least 1");
  if (p.n < 1 || p.n > 128) fail("n must be between 1 and 128");
  if (int64_t(r.prompt.size()) + p.max_tokens > max_len) {
    fail("This model's maximum context length is " + std::to_string(max_len) + " tokens. However, you requested " +
         std::to_string(int64_t(r.prompt.size()) + p.max_tokens) + " tokens (" + std::to_string(r.prompt.size()) +
         " in the prompt, " + std::to_string(p.max_tokens) + " in the completion).");
  }
  if (!(p.temperature >= 0.0f) || !std::isfinite(p.temperature)) fail("temperature must be a finite number >= 0");
  if (!(p.top_p > 0.0f && p.top_p <= 1.0f)) fail("top_p must be in (0, 1]");
  if (!(p.min_p >= 0.0f && p.min_p <= 1.0f)) fail("min_p must be in [0, 1]");
  if (p.top_k < -1) fail("top_k must be -1 (off), 0 (off) or positive");
  if (!(std::fabs(p.presence_penalty) <= 2.0f)) fail("presence_penalty must be in [-2, 2]");
  if (!(std::fabs(p.frequency_penalty) <= 2.0f)) fail("frequency_penalty must be in [-2, 2]");
  if (!(p.repetition_penalty > 0.0f) || !std::isfinite(p.repetition_penalty)) {
    fail("repetition_penalty must be a finite number > 0");
  }
  if (p.logprobs > 20) fail("logprobs must be at most 20");
}

void LLMEngine::add_request(Request request) {
  validate(request);
  if (requests_.count(request.id)) throw Error(ErrorCode::kInvalidArgument, "duplicate request id " + request.id);
  const std::optional<size_t> target = choose_replica();
  if (!target) throw Error(ErrorCode::kInternal, "every data-parallel replica of this engine has failed");
  auto state = std::make_unique<RequestState>();
  state->request = std::move(request);
  state->replica = *target;
  Replica& replica = *replicas_[state->replica];
  const Request& r = state->request;
  const uint64_t base_seed = r.sampling.seed ? *r.sampling.seed : mix64(default_seed_ ^ mix64(uint64_t(next_seq_id_)));
  auto choice = std::make_unique<Choice>(tokenizer_, r.sampling, r.prompt.back());
  choice->seed = mix64(base_seed);
  choice->seq = std::make_unique<Sequence>();
  Sequence& seq = *choice->seq;
  seq.id = next_seq_id_++;
  seq.arrival = seq.id;
  seq.priority = r.priority;
  seq.tokens = r.prompt;
  seq.prompt_len = int(r.prompt.size());
  seq.forks_to_come = r.sampling.n - 1;
  owner_of_seq_[seq.id] = state.get();
  replica.scheduler->add(&seq);
  state->choices.push_back(std::move(choice));
  replica.prompt_tokens += r.prompt.size();
  replica.requests.push_back(state.get());
  requests_[r.id] = std::move(state);
}

std::optional<size_t> LLMEngine::choose_replica() const {
  if (replicas_.size() == 1) return replicas_.front()->up ? std::optional<size_t>(0) : std::nullopt;
  std::vector<ReplicaLoad> loads(replicas_.size());
  for (size_t i = 0; i < replicas_.size(); ++i) {
    const Replica& r = *replicas_[i];
    loads[i].up = r.up;
    loads[i].kv_usage = r.blocks->usage();
    for (const RequestState* st : r.requests) {
      const Sequence& first = *st->choices.front()->seq;
      const int prompt_left = std::max(0, first.prompt_len - first.num_computed);
      const int64_t to_generate = int64_t(st->request.sampling.n) * st->request.sampling.max_tokens;
      loads[i].outstanding_tokens += uint64_t(prompt_left + std::max<int64_t>(0, to_generate - st->completion_tokens));
    }
  }
  return pick_replica(loads);
}

std::optional<RequestOutput> LLMEngine::abort_request(const std::string& id) {
  auto it = requests_.find(id);
  if (it == requests_.end()) return std::nullopt;
  return end_request(*it->second);
}

RequestOutput LLMEngine::end_request(RequestState& st) {
  Replica& replica = *replicas_[st.replica];
  RequestOutput out;
  out.request_id = st.request.id;
  out.prompt_tokens = int(st.request.prompt.size());
  out.completion_tokens = st.completion_tokens;
  out.cached_prompt_tokens = st.cached_prompt_tokens;
  out.finished = true;
  end_open_choices(st, out);
  std::erase(replica.requests, &st);
  requests_.erase(out.request_id);  // destroys `st`
  return out;
}

void LLMEngine::end_open_choices(RequestState& st, RequestOutput& out) {
  Scheduler& scheduler = *replicas_[st.replica]->scheduler;
  for (size_t i = 0; i < st.choices.size(); ++i) {
    Choice& c = *st.choices[i];
    if (c.finished) continue;
    c.finished = true;
    ++st.num_finished;
    scheduler.finish(c.seq.get());
    owner_of_seq_.erase(c.seq->id);
    CompletionDelta d;
    d.index = int(i);
    d.finish = FinishReason::kAbort;
    out.deltas.push_back(std::move(d));
  }
}

void LLMEngine::fail_replica(size_t index, const std::string& reason, std::vector<RequestOutput>& outputs) {
  Replica& replica = *replicas_[index];
  replica.up = false;
  replica.failure = reason;
  std::fprintf(stderr, "tidal: data-parallel replica %zu is down (%zu of its requests failed): %s\n", index,
               replica.requests.size(), reason.c_str());
  const std::vector<RequestState*> failed = replica.requests;  // end_request erases from the list
  for (RequestState* st : failed) {
    outputs.push_back(end_request(*st));
    outputs.back().error = reason;
  }
}

MovedRequest::MovedRequest(std::unique_ptr<RequestState> state, const Tokenizer* tokenizer)
    : state_(std::move(state)), tokenizer_(tokenizer) {}
MovedRequest::MovedRequest(MovedRequest&&) noexcept = default;
MovedRequest& MovedRequest::operator=(MovedRequest&&) noexcept = default;
MovedRequest::~MovedRequest() = default;

const std::string& MovedRequest::id() const { return state_->request.id; }

int64_t MovedRequest::tokens_to_recompute() const {
  int64_t n = 0;
  for (const auto& c : state_->choices) {
    if (!c->finished) n += int64_t(c->seq->tokens.size());
  }
  return n;
}

std::vector<MovedRequest> LLMEngine::release_requests() {
  std::vector<RequestState*> order;
  for (const auto& replica : replicas_) order.insert(order.end(), replica->requests.begin(), replica->requests.end());
  // Replicas keep their own arrival order; the first choice's sequence
  // carries the request's place among all of them.
  std::stable_sort(order.begin(), order.end(), [](const RequestState* a, const RequestState* b) {
    return a->choices.front()->seq->arrival < b->choices.front()->seq->arrival;
  });
  std::vector<MovedRequest> moved;
  moved.reserve(order.size());
  for (RequestState* st : order) {
    Replica& replica = *replicas_[st->replica];
    for (auto& c : st->choices) {
      if (c->finished) continue;
      replica.scheduler->finish(c->seq.get());  // leaves the queues, frees the blocks
      owner_of_seq_.erase(c->seq->id);
      c->seq->num_computed = 0;
    }
    auto it = requests_.find(st->request.id);
    moved.emplace_back(std::move(it->second), &tokenizer_);
    requests_.erase(it);
  }
  for (auto& replica : replicas_) replica->requests.clear();
  return moved;
}

void LLMEngine::adopt_requests(std::vector<MovedRequest>& moved) {
  if (!moved.empty() && !choose_replica()) {
    throw Error(ErrorCode::kInternal, "every data-parallel replica of this engine has failed");
  }
  for (const MovedRequest& m : moved) {
    if (m.tokenizer_ != &tokenizer_) {
      throw Error(ErrorCode::kInternal, "request " + m.id() + " comes from an engine with another tokenizer");
    }
    validate(m.state_->request);
    if (requests_.count(m.id())) throw Error(ErrorCode::kInvalidArgument, "duplicate request id " + m.id());
  }
  for (MovedRequest& m : moved) {
    std::unique_ptr<RequestState> state = std::move(m.state_);
    state->replica = *choose_replica();
    Replica& replica = *replicas_[state->replica];
    for (auto& c : state->choices) {
      if (c->finished) continue;
      Sequence& seq = *c->seq;
      seq.id = next_seq_id_++;
      seq.arrival = seq.id;
      owner_of_seq_[seq.id] = state.get();
      replica.scheduler->add(&seq);
    }
    replica.requests.push_back(state.get());
    requests_[state->request.id] = std::move(state);
  }
  moved.clear();
}

void LLMEngine::set_scheduler_limits(int max_num_seqs, int max_num_batched_tokens, double target_step_seconds) {
  scheduler_config_.max_num_seqs = max_num_seqs;
  scheduler_config_.max_num_batched_tokens = max_num_batched_tokens;
  scheduler_config_.target_step_seconds = target_step_seconds;
  for (auto& replica : replicas_) replica->scheduler->set_limits(max_num_seqs, max_num_batched_tokens, target_step_seconds);
}

std::vector<RequestOutput> LLMEngine::step() {
  std::vector<SchedulerOutput> sched(replicas_.size());
  bool any = false;
  for (size_t i = 0; i < replicas_.size(); ++i) {
    sched[i] = replicas_[i]->scheduler->schedule();
    any = any || !sched[i].empty();
  }
  if (!any) return {};
  ++steps_;

  const auto now = Clock::now();
  for (const SchedulerOutput& so : sched) {
    for (const ScheduledSeq& s : so.scheduled) {
      RequestState* st = owner_of_seq_.at(s.seq->id);
      if (!st->scheduled_once) {
        st->scheduled_once = true;
        st->cached_prompt_tokens = s.seq->num_computed;
        st->queue_seconds = std::chrono::duration<double>(now - st->arrival).count();
      }
    }
  }

  std::vector<std::vector<float>*> logits(replicas_.size(), nullptr);
  // Caught per replica, so that a failed replica leaves the others' step
  // whole; it goes down below, once their outputs are in.
  std::vector<std::optional<std::string>> failures(replicas_.size());
  auto run = [&](size_t i) {
    if (sched[i].empty()) return;
    try {
      const auto start = Clock::now();
      logits[i] = &replicas_[i]->executor->run(sched[i]);
      const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
      replicas_[i]->scheduler->observe_step(sched[i].num_batched_tokens, seconds);
    } catch (const std::exception& e) {
      failures[i] = e.what();
    }
  };
  if (threads_) {
    threads_->run(run);
  } else {
    run(0);
  }

  std::vector<RequestOutput> outputs;
  std::unordered_map<RequestState*, size_t> output_of;
  for (size_t i = 0; i < replicas_.size(); ++i) {
    if (sched[i].empty() || failures[i]) continue;
    Replica& replica = *replicas_[i];
    ++replica.steps;
    replica.scheduler->update(sched[i]);
    process(replica, sched[i], *logits[i], outputs, output_of);
  }

  for (RequestOutput& out : outputs) {
    RequestState& st = *requests_.at(out.request_id);
    out.prompt_tokens = int(st.request.prompt.size());
    out.completion_tokens = st.completion_tokens;
    out.cached_prompt_tokens = st.cached_prompt_tokens;
    if (!st.queue_time_reported) {
      st.queue_time_reported = true;
      out.queue_seconds = st.queue_seconds;
    }
    out.finished = st.all_done();
  }
  for (const RequestOutput& out : outputs) {
    if (!out.finished) continue;
    auto it = requests_.find(out.request_id);
    std::erase(replicas_[it->second->replica]->requests, it->second.get());
    requests_.erase(it);
  }
  // The failed step is not update()d: its blocks never reach the prefix
  // cache, and they are freed with the requests.
  for (size_t i = 0; i < replicas_.size(); ++i) {
    if (failures[i]) fail_replica(i, *failures[i], outputs);
  }
  return outputs;
}

void LLMEngine::process(Replica& replica, const SchedulerOutput& sched, std::vector<float>& logits,
                        std::vector<RequestOutput>& outputs, std::unordered_map<RequestState*, size_t>& output_of) {
  auto output_for = [&](RequestState* st) -> RequestOutput& {
    auto [it, inserted] = output_of.try_emplace(st, outputs.size());
    if (inserted) {
      outputs.emplace_back();
      outputs.back().request_id = st->request.id;
    }
    return outputs[it->second];
  };

  const int vocab = config_.vocab_size;
  // A model may pad its vocabulary past what its tokenizer can spell; those
  // ids have no text, so they are never drawn (nor offered as logprobs).
  const int spelled = std::min(vocab, tokenizer_.vocab_size());
  const std::vector<int32_t> extra_stops = tokenizer_.extra_stop_ids();
  std::vector<float> scratch;
  int row = 0;
  for (const ScheduledSeq& s : sched.scheduled) {
    if (!s.sample) continue;
    float* row_logits = logits.data() + size_t(row++) * vocab;
    const auto owner = owner_of_seq_.find(s.seq->id);
    if (owner == owner_of_seq_.end()) continue;  // its request failed earlier in this step
    RequestState* st = owner->second;
    std::fill(row_logits + spelled, row_logits + vocab, -std::numeric_limits<float>::infinity());
    const SamplingParams& params = st->request.sampling;

    // The first sample of a request with n > 1 forks the other choices off
    // the prompt's KV blocks (copy-on-write) and draws all n first tokens
    // from the same logits.
    std::vector<Choice*> targets;
    auto find_choice = [&](const Sequence* seq) {
      for (auto& c : st->choices)
        if (c->seq.get() == seq) return c.get();
      return static_cast<Choice*>(nullptr);
    };
    targets.push_back(find_choice(s.seq));
    if (params.n > 1 && int(st->choices.size()) < params.n) {
      Sequence& parent = *s.seq;
      while (int(st->choices.size()) < params.n) {
        const int index = int(st->choices.size());
        auto child = std::make_unique<Choice>(tokenizer_, params, st->request.prompt.back());
        child->seed = mix64(st->choices[0]->seed + uint64_t(index));
        child->seq = std::make_unique<Sequence>();
        Sequence& cs = *child->seq;
        cs.id = next_seq_id_++;
        cs.arrival = parent.arrival;
        cs.priority = parent.priority;
        cs.tokens = parent.tokens;
        cs.prompt_len = parent.prompt_len;
        replica.scheduler->fork(parent, &cs);
        owner_of_seq_[cs.id] = st;
        targets.push_back(child.get());
        st->choices.push_back(std::move(child));
      }
    }
    if (targets.size() > 1) scratch.assign(row_logits, row_logits + vocab);

    for (size_t t = 0; t < targets.size(); ++t) {
      Choice& c = *targets[t];
      Sequence& seq = *c.seq;
      if (t > 0) std::copy(scratch.begin(), scratch.end(), row_logits);
      std::span<const int32_t> generated(seq.tokens.data() + seq.prompt_len, size_t(seq.num_generated()));
      SampleResult r = sample_token(std::span<float>(row_logits, size_t(vocab)), params, generated, c.seed,
                                    uint64_t(seq.num_generated()), std::span<const int32_t>(st->request.prompt));
      if (r.token < 0) {
        // The model gave this sequence no distribution (NaN, or no finite
        // logit): its request fails alone and the batch goes on. Its n
        // choices all exist by now (forks come before the first sample), so
        // ending the open ones finishes it; step() then forgets it.
        RequestOutput& out = output_for(st);
        out.error = "the model's logits for it hold NaN or no finite value";
        end_open_choices(*st, out);
        break;
      }
      seq.tokens.push_back(r.token);
      ++replica.generation_tokens;
      ++st->completion_tokens;

      CompletionDelta d;
      for (size_t i = 0; i < st->choices.size(); ++i)
        if (st->choices[i].get() == &c) d.index = int(i);
      d.token_ids.push_back(r.token);
      if (params.logprobs >= 0) {
        d.logprobs.push_back(r.logprob);
        d.top_logprobs.push_back(std::move(r.top));
      }
      const bool eos_like = !params.ignore_eos &&
                            (r.token == tokenizer_.eos_id() ||
                             std::find(extra_stops.begin(), extra_stops.end(), r.token) != extra_stops.end());
      const bool stop_id = eos_like || std::find(params.stop_token_ids.begin(), params.stop_token_ids.end(),
                                                 r.token) != params.stop_token_ids.end();
      if (!stop_id) d.text = c.text.push(r.token);
      if (stop_id || c.text.stopped()) {
        d.finish = FinishReason::kStop;
        d.stop_reason = c.text.matched();
      } else if (seq.num_generated() >= params.max_tokens || int(seq.tokens.size()) >= max_model_len()) {
        d.finish = FinishReason::kLength;
      }
      if (d.finish) {
        d.text += c.text.finish();
        c.finished = true;
        ++st->num_finished;
        replica.scheduler->finish(&seq);
        owner_of_seq_.erase(seq.id);
      }
      output_for(st).deltas.push_back(std::move(d));
    }
  }
}

EngineStats LLMEngine::replica_stats(const Replica& r) {
  EngineStats s;
  s.num_running = r.scheduler->num_running();
  s.num_waiting = r.scheduler->num_waiting();
  s.num_blocks = r.blocks->num_blocks();
  s.num_used_blocks = r.blocks->num_used_blocks();
  s.kv_usage = r.blocks->usage();
  s.block_size = r.blocks->block_size();
  s.kv_cache_dtype = r.kv_cache_dtype;
  s.kv_bytes_per_token = r.kv_bytes_per_token;
  s.prefix = r.blocks->prefix_stats();
  s.num_preemptions = r.scheduler->num_preemptions();
  s.prompt_tokens = r.prompt_tokens;
  s.generation_tokens = r.generation_tokens;
  s.steps = r.steps;
  s.num_replicas = 1;
  s.replicas_up = r.up ? 1 : 0;
  s.failure = r.failure;
  return s;
}

EngineStats LLMEngine::stats() const {
  if (replicas_.size() == 1) {
    EngineStats s = replica_stats(*replicas_.front());
    s.steps = steps_;
    return s;
  }
  EngineStats total;
  for (const auto& replica : replicas_) {
    EngineStats s = replica_stats(*replica);
    total.num_running += s.num_running;
    total.num_waiting += s.num_waiting;
    total.num_blocks += s.num_blocks;
    total.num_used_blocks += s.num_used_blocks;
    total.block_size = s.block_size;
    total.kv_cache_dtype = s.kv_cache_dtype;
    total.kv_bytes_per_token = std::max(total.kv_bytes_per_token, s.kv_bytes_per_token);
    total.prefix.queries += s.prefix.queries;
    total.prefix.hits += s.prefix.hits;
    total.num_preemptions += s.num_preemptions;
    total.prompt_tokens += s.prompt_tokens;
    total.generation_tokens += s.generation_tokens;
    total.num_replicas += s.num_replicas;
    total.replicas_up += s.replicas_up;
    total.replicas.push_back(std::move(s));
  }
  total.kv_usage = total.num_blocks > 0 ? double(total.num_used_blocks) / total.num_blocks : 0.0;
  total.steps = steps_;
  return total;
}

}  // namespace tidal
