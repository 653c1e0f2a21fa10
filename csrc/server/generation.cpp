#include "server/generation.h"

#include <boost/asio/post.hpp>
#include <chrono>
#include <cstdio>

#include "core/error.h"

namespace tidal {

namespace {

using Clock = std::chrono::steady_clock;

double seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

// Characters (code points) in UTF-8 text: bytes that do not continue one.
size_t utf8_chars(std::string_view s) {
  size_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

class GenerationJob : public std::enable_shared_from_this<GenerationJob> {
 public:
  GenerationJob(ServingContext& ctx, ServedModel& model, std::shared_ptr<Exchange> exchange, GenerationPlan plan)
      : ctx_(ctx), model_(model), exchange_(std::move(exchange)), executor_(exchange_->executor()),
        plan_(std::move(plan)), builder_(plan_.kind, model.name(), plan_.logprobs, plan_.include_usage),
        n_(plan_.requests.empty() ? 1 : plan_.requests.front().sampling.n) {}

  void start();

 private:
  struct Choice {
    std::string text;                     // echo + generated text
    std::vector<TokenLogprobs> logprobs;
    std::optional<FinishReason> finish;
    int32_t prev_token = -1;              // for the next token's text
    size_t chars = 0;                     // text_offset of the next token
    bool started = false;                 // its first stream chunk went out
    std::vector<int32_t> token_ids;       // with return_token_ids: every generated id
    size_t ids_sent = 0;                  // of token_ids, in stream chunks so far
  };
  // Per engine request, touched only on the engine thread.
  struct Timing {
    Clock::time_point arrival;
    std::optional<Clock::time_point> last_token;
  };

  AsyncEngine::Sink make_sink(size_t prompt);
  void observe(Timing& timing, const RequestOutput& out);
  void on_output(size_t prompt, const RequestOutput& out);
  void add_delta(size_t prompt, const CompletionDelta& d);
  std::string token_text(int32_t id, int32_t prev) const;
  void complete();
  void abort_all();
  // Ends this request alone after a failure in its own output handling or
  // one the engine reports (RequestOutput::error): its engine requests are
  // aborted, its client gets a 500 (or, once streaming, an error event and
  // [DONE]); every other request goes on.
  void fail(const std::string& why);

  ServingContext& ctx_;
  ServedModel& model_;
  std::shared_ptr<Exchange> exchange_;
  boost::asio::any_io_executor executor_;
  GenerationPlan plan_;
  ResponseBuilder builder_;
  const int n_;
  const Clock::time_point arrival_ = Clock::now();
  std::vector<std::string> request_ids_;
  std::vector<bool> request_done_;
  size_t requests_done_ = 0;
  std::vector<Choice> choices_;  // prompt * n + i
  std::vector<std::vector<int32_t>> prompt_ids_;  // per prompt, with return_token_ids
  Usage usage_;
  bool done_ = false;            // answered (or refused): later outputs are only drained
};

void GenerationJob::start() {
  const size_t prompts = plan_.requests.size();
  choices_.resize(prompts * size_t(n_));
  for (size_t p = 0; p < prompts; ++p) {
    Request& r = plan_.requests[p];
    r.id = prompts == 1 ? builder_.id() : builder_.id() + "-" + std::to_string(p);
    request_ids_.push_back(r.id);
    // Checked for all prompts before any is queued, so that a bad one in a
    // batch leaves nothing behind.
    try {
      model_.engine.validate(r);
    } catch (const Error& e) {
      throw invalid_request(e.what(), plan_.prompt_param, "invalid_value");
    }
    usage_.prompt_tokens += int64_t(r.prompt.size());
    if (plan_.return_token_ids) prompt_ids_.push_back(r.prompt);
    const std::string& echo = plan_.echo[p];
    for (int i = 0; i < n_; ++i) {
      Choice& c = choices_[p * n_ + i];
      c.text = echo;
      c.chars = utf8_chars(echo);
      c.prev_token = r.prompt.back();
    }
  }
  request_done_.assign(prompts, false);

  for (size_t p = 0; p < prompts; ++p) {
    const AsyncEngine::SubmitResult result = model_.engine.submit(std::move(plan_.requests[p]), make_sink(p));
    if (result == AsyncEngine::SubmitResult::kAccepted) continue;
    done_ = true;
    for (size_t q = 0; q < p; ++q) model_.engine.abort(request_ids_[q]);
    if (result == AsyncEngine::SubmitResult::kQueueFull) {
      throw ApiError(429, "The server is busy: too many requests are waiting. Please retry later.", "requests", "",
                     "rate_limit_exceeded");
    }
    if (result == AsyncEngine::SubmitResult::kUnavailable) {
      throw ApiError(503, "No replica of this model is serving: each has failed.", "server_error", "",
                     "service_unavailable");
    }
    throw ApiError(503, "The server is shutting down.", "server_error", "", "service_unavailable");
  }
  plan_.requests.clear();  // moved into the engine

  std::weak_ptr<GenerationJob> weak = weak_from_this();
  exchange_->on_disconnect([weak] {
    if (auto self = weak.lock()) self->abort_all();
  });
  if (plan_.stream) {
    exchange_->begin_events();
    if (plan_.kind == ApiKind::kChat) {
      for (size_t i = 0; i < choices_.size(); ++i) exchange_->send_event(builder_.role_chunk(int(i)));
    }
  }
}

AsyncEngine::Sink GenerationJob::make_sink(size_t prompt) {
  auto timing = std::make_shared<Timing>(Timing{arrival_, std::nullopt});
  return [self = shared_from_this(), prompt, timing](const RequestOutput& out) {
    self->observe(*timing, out);
    boost::asio::post(self->executor_, [self, prompt, out] {
      try {
        self->on_output(prompt, out);
      } catch (const std::exception& e) {
        self->fail(e.what());
      }
    });
  };
}

// On the engine thread, so that latencies do not include time in the HTTP
// layer's queue.
void GenerationJob::observe(Timing& timing, const RequestOutput& out) {
  ServerMetrics& m = model_.metrics;
  const auto now = Clock::now();
  if (out.queue_seconds >= 0.0) m.request_queue_time.observe(out.queue_seconds);
  size_t tokens = 0;
  for (const CompletionDelta& d : out.deltas) tokens += d.token_ids.size();
  if (tokens > 0) {
    if (!timing.last_token) {
      m.time_to_first_token.observe(seconds(now - timing.arrival));
      m.prompt_tokens += uint64_t(out.prompt_tokens);
    } else {
      m.inter_token_latency.observe(seconds(now - *timing.last_token));
    }
    timing.last_token = now;
    m.generation_tokens += tokens;
  }
  if (out.finished) {
    m.e2e_request_latency.observe(seconds(now - timing.arrival));
    FinishReason reason = FinishReason::kAbort;
    for (const CompletionDelta& d : out.deltas)
      if (d.finish) reason = *d.finish;
    m.count_finished(reason);
  }
}

void GenerationJob::on_output(size_t prompt, const RequestOutput& out) {
  if (done_) return;
  if (!out.error.empty()) {
    // The engine could not finish it (its replica failed): the whole
    // response fails, as it would for a failure here.
    request_done_[prompt] = true;
    return fail(out.error);
  }
  for (const CompletionDelta& d : out.deltas) add_delta(prompt, d);
  if (!out.finished) return;
  request_done_[prompt] = true;
  ++requests_done_;
  // Choices the engine ended without saying how were aborted.
  for (int i = 0; i < n_; ++i) {
    Choice& c = choices_[prompt * n_ + i];
    if (c.finish) continue;
    CompletionDelta abort;
    abort.index = i;
    abort.finish = FinishReason::kAbort;
    add_delta(prompt, abort);
  }
  if (requests_done_ == request_ids_.size()) complete();
}

void GenerationJob::add_delta(size_t prompt, const CompletionDelta& d) {
  if (d.index < 0 || d.index >= n_) return;
  const size_t index = prompt * n_ + size_t(d.index);
  Choice& c = choices_[index];
  const size_t first_new = c.logprobs.size();
  for (size_t i = 0; i < d.token_ids.size(); ++i) {
    const int32_t id = d.token_ids[i];
    if (plan_.logprobs) {
      TokenLogprobs t;
      t.token = token_text(id, c.prev_token);
      t.logprob = i < d.logprobs.size() ? d.logprobs[i] : 0.0f;
      if (i < d.top_logprobs.size()) {
        for (const TokenLogprob& alt : d.top_logprobs[i]) t.top.emplace_back(token_text(alt.id, c.prev_token), alt.logprob);
      }
      t.text_offset = c.chars;
      c.chars += utf8_chars(t.token);
      c.logprobs.push_back(std::move(t));
    }
    c.prev_token = id;
  }
  if (plan_.return_token_ids) c.token_ids.insert(c.token_ids.end(), d.token_ids.begin(), d.token_ids.end());
  usage_.completion_tokens += int64_t(d.token_ids.size());
  c.text += d.text;
  if (d.finish) c.finish = d.finish;

  if (!plan_.stream) return;
  const std::span<const TokenLogprobs> new_logprobs(c.logprobs.data() + first_new, c.logprobs.size() - first_new);
  std::string text = c.started ? d.text : plan_.echo[prompt] + d.text;
  // Half a character produces no text; it goes out with the next token.
  if (text.empty() && new_logprobs.empty() && !d.finish) return;
  std::optional<ChunkTokenIds> ids;
  if (plan_.return_token_ids) {
    // Ids held back with a half character go out with this chunk.
    ids = ChunkTokenIds{std::span<const int32_t>(c.token_ids).subspan(c.ids_sent), std::nullopt};
    if (!c.started) ids->prompt_token_ids = std::span<const int32_t>(prompt_ids_[prompt]);
    c.ids_sent = c.token_ids.size();
  }
  c.started = true;
  exchange_->send_event(builder_.delta_chunk(int(index), text, new_logprobs, d.finish, ids));
}

std::string GenerationJob::token_text(int32_t id, int32_t prev) const {
  const Tokenizer& tok = ctx_.tokenizer;
  return tok.is_special(id) ? tok.id_to_piece(id) : tok.token_bytes(id, prev);
}

void GenerationJob::complete() {
  done_ = true;
  if (plan_.stream) {
    if (plan_.include_usage) exchange_->send_event(builder_.usage_chunk(usage_));
    exchange_->send_event("[DONE]");
    exchange_->end_events();
    return;
  }
  std::vector<ChoiceResult> results;
  results.reserve(choices_.size());
  for (size_t i = 0; i < choices_.size(); ++i) {
    Choice& c = choices_[i];
    results.push_back({std::move(c.text), std::move(c.logprobs), c.finish});
    if (plan_.return_token_ids) {
      results.back().token_ids = std::move(c.token_ids);
      results.back().prompt_token_ids = prompt_ids_[i / size_t(n_)];
    }
  }
  exchange_->reply(200, builder_.response(results, usage_));
}

void GenerationJob::fail(const std::string& why) {
  std::fprintf(stderr, "tidal: request %s failed: %s\n", builder_.id().c_str(), why.c_str());
  if (done_) return;
  done_ = true;
  abort_all();
  const ApiError error = server_error("The server failed to produce this completion.");
  if (!plan_.stream) return exchange_->reply_error(error);
  exchange_->send_event(error.body());
  exchange_->send_event("[DONE]");
  exchange_->end_events();
}

void GenerationJob::abort_all() {
  for (size_t p = 0; p < request_ids_.size(); ++p)
    if (!request_done_[p]) model_.engine.abort(request_ids_[p]);
}

}  // namespace

int resolve_max_tokens(const ServedModel& model, std::optional<int64_t> requested, std::optional<int64_t> default_max,
                       size_t prompt_len, const std::string& prompt_param) {
  const int64_t context = model.max_model_len;
  const int64_t prompt = int64_t(prompt_len);
  const std::string limit = "This model's maximum context length is " + std::to_string(context) + " tokens. ";
  if (prompt >= context) {
    throw invalid_request(limit + "However, your request has " + std::to_string(prompt) +
                              " input tokens. Please reduce the length of the input.",
                          prompt_param, "context_length_exceeded");
  }
  const std::optional<int64_t> wanted = requested ? requested : default_max;
  if (!wanted) return int(context - prompt);
  if (*wanted < 1) {
    throw invalid_request("Invalid value for 'max_tokens': expected a value >= 1, but got " + std::to_string(*wanted) +
                              " instead.",
                          "max_tokens", "invalid_value");
  }
  if (*wanted > context - prompt) {
    throw invalid_request(limit + "However, you requested " + std::to_string(prompt) + " + " +
                              std::to_string(*wanted) + " tokens (" + std::to_string(prompt) + " in the " +
                              prompt_param + ", " + std::to_string(*wanted) +
                              " in the completion). Please reduce the length of the " + prompt_param +
                              " or completion.",
                          "max_tokens", "context_length_exceeded");
  }
  return int(*wanted);
}

void run_generation(ServingContext& ctx, ServedModel& model, std::shared_ptr<Exchange> exchange, GenerationPlan plan) {
  std::make_shared<GenerationJob>(ctx, model, std::move(exchange), std::move(plan))->start();
}

}  // namespace tidal
