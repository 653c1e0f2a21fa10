// The client-side timeline of one benchmark request, with vLLM's
// definitions: times are measured from the moment the request is sent
// (before connecting, as vLLM's client opens a connection per request).
//   TTFT: send -> first content chunk
//   ITL:  gaps between consecutive content chunks
//   E2E latency: send -> last content chunk
// A content chunk is a stream event whose first choice carries non-empty
// text. (vLLM also counts empty ones, e.g. a chat stream's opening
// role-only delta, which would make TTFT measure only the connection.)
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "stream_chunk.h"

namespace tidal::bench {

struct RequestRecord {
  size_t index = 0;                 // position in the dataset
  int prompt_len = 0;               // from the dataset; 0 when unknown (text prompts not tokenized)
  int expected_output_len = 0;      // max_tokens sent
  double start_s = 0;               // send time, seconds since the benchmark started
  bool success = false;
  std::string error;
  double ttft_s = 0;
  double latency_s = 0;             // E2E
  std::vector<double> itl_s;
  int content_chunks = 0;
  std::optional<Usage> usage;
  std::string finish_reason;
  std::optional<int> retokenized_output;  // the generated text re-tokenized by the server
  std::string generated_text;
  // With the server's "return_token_ids" extension (vLLM's; ask for it with
  // --extra-body '{"return_token_ids":true}'): the ids of the prompt as the
  // server tokenized it (chat: the formatted conversation), and the served
  // output ids, every chunk's concatenated. Absent when the server sent none.
  std::optional<std::vector<int32_t>> prompt_token_ids;
  std::optional<std::vector<int32_t>> output_token_ids;

  // Output tokens: the server's usage when it reports a nonzero count, as
  // vLLM does. Without usage, vLLM re-tokenizes the generated text, which
  // miscounts whenever the generated tokens are not the canonical
  // tokenization of their text; so first, a stream that finished for
  // "length" generated exactly max_tokens. Then the re-tokenized count, and
  // with no tokenizer reachable, the number of content chunks.
  int output_tokens() const;
  const char* output_tokens_source() const;  // "usage", "max_tokens", "retokenized" or "chunks"
  bool needs_retokenizing() const;
  // Input tokens: the server's usage when reported, else the dataset's count.
  int input_tokens() const;
};

// Folds one stream event, received `t_s` seconds after the send, into `r`.
void record_chunk(RequestRecord& r, const StreamChunk& chunk, double t_s);

// Decides success once the stream has ended cleanly: a request succeeds
// when it produced content and reported no error.
void finish_record(RequestRecord& r);

}  // namespace tidal::bench
