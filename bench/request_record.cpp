#include "request_record.h"

namespace tidal::bench {

int RequestRecord::output_tokens() const {
  if (usage && usage->completion_tokens > 0) return usage->completion_tokens;
  if (retokenized_output) return *retokenized_output;
  return content_chunks;
}

const char* RequestRecord::output_tokens_source() const {
  if (usage && usage->completion_tokens > 0) return "usage";
  return retokenized_output ? "retokenized" : "chunks";
}

int RequestRecord::input_tokens() const {
  if (usage && usage->prompt_tokens > 0) return usage->prompt_tokens;
  return prompt_len;
}

void record_chunk(RequestRecord& r, const StreamChunk& chunk, double t_s) {
  if (chunk.error && r.error.empty()) r.error = *chunk.error;
  if (chunk.usage) r.usage = chunk.usage;
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
