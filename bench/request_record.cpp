#include "request_record.h"

namespace tidal::bench {

namespace {

bool has_usage_count(const RequestRecord& r) { return r.usage && r.usage->completion_tokens > 0; }
bool hit_max_tokens(const RequestRecord& r) { return r.finish_reason == "length" && r.expected_output_len > 0; }

}  // namespace

int RequestRecord::output_tokens() const {
  if (has_usage_count(*this)) return usage->completion_tokens;
  if (hit_max_tokens(*this)) return expected_output_len;
  if (retokenized_output) return *retokenized_output;
  return content_chunks;
}

const char* RequestRecord::output_tokens_source() const {
  if (has_usage_count(*this)) return "usage";
  if (hit_max_tokens(*this)) return "max_tokens";
  return retokenized_output ? "retokenized" : "chunks";
}

bool RequestRecord::needs_retokenizing() const { return success && !has_usage_count(*this) && !hit_max_tokens(*this); }

int RequestRecord::input_tokens() const {
  if (usage && usage->prompt_tokens > 0) return usage->prompt_tokens;
  return prompt_len;
}

void record_chunk(RequestRecord& r, const StreamChunk& chunk, double t_s) {
  if (chunk.error && r.error.empty()) r.error = *chunk.error;
  if (chunk.usage) r.usage = chunk.usage;
  if (!chunk.finish_reason.empty()) r.finish_reason = chunk.finish_reason;
  if (chunk.prompt_token_ids && !r.prompt_token_ids) r.prompt_token_ids = chunk.prompt_token_ids;
  // Before the content test: a token that ends mid-character comes with no text.
  if (chunk.token_ids) {
    if (!r.output_token_ids) r.output_token_ids.emplace();
    r.output_token_ids->insert(r.output_token_ids->end(), chunk.token_ids->begin(), chunk.token_ids->end());
  }
  if (chunk.content.empty()) return;
  if (r.content_chunks == 0)
    r.ttft_s = t_s;
  else
    r.itl_s.push_back(t_s - r.latency_s);
  r.latency_s = t_s;
  ++r.content_chunks;
  r.generated_text += chunk.content;
}

void finish_record(RequestRecord& r) {
  if (r.error.empty() && r.content_chunks == 0) r.error = "the stream ended without any content chunk";
  r.success = r.error.empty();
}

}  // namespace tidal::bench
