// Benchmark prompts. Each dataset turns into the same list of requests:
// a prompt (token ids or text), how long it is, how many tokens to ask for,
// and for traces, when it arrived.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <random>
#include <string>
#include <vector>

namespace tidal::bench {

struct SampleRequest {
  std::vector<int32_t> prompt_ids;  // token-id prompt; empty for text prompts
  std::string prompt_text;          // text prompt; empty for token-id prompts
  int prompt_len = 0;               // tokens; 0 when unknown (the server's usage tells)
  int output_len = 0;               // max_tokens to request
  std::optional<double> timestamp_s;
};

// vLLM's random dataset: lengths uniform in [len*(1-r), len*(1+r)], each
// prompt the consecutive ids (offset + index + j) mod vocab from a random
// offset. The prompts are sent as token ids, so the server sees exactly
// `prompt_len` tokens without the client needing the model's tokenizer.
struct RandomDatasetOptions {
  int input_len = 1024;
  int output_len = 128;
  double range_ratio = 0.0;
  int vocab_size = 0;
};
std::vector<SampleRequest> random_dataset(size_t n, const RandomDatasetOptions& o, std::mt19937_64& rng);

// The served model's tokenizer (the server's /tokenize and /detokenize).
struct TextCodec {
  std::function<std::vector<int32_t>(const std::string&)> encode;
  std::function<std::string(const std::vector<int32_t>&)> decode;
};

// Turns token-id prompts into text the way vLLM's random dataset does
// (gen_prompt_decode_to_target_len): decode, re-encode, and while the length
// is off, pad with random ids or truncate and try again, at most 10 times.
// prompt_len becomes the re-encoded length.
void to_text_prompts(std::vector<SampleRequest>& samples, const TextCodec& codec, int vocab_size,
                     std::mt19937_64& rng);

// vLLM's ShareGPT sampling: shuffle, take the first human turn as the prompt
// and the next turn's length (or `fixed_output_len`) as the output length,
// skip pairs shorter than 4 tokens or longer than 1024 / 2048 in total.
std::vector<SampleRequest> sharegpt_dataset(const std::string& path, size_t n, std::optional<int> fixed_output_len,
                                            const TextCodec& codec, std::mt19937_64& rng);

// A BurstGPT trace (columns Timestamp, Model, Request tokens, Response
// tokens, ...): as vLLM does, GPT-4 rows with a response, each prompt the ids
// (index + j) mod vocab of the logged request length. Unlike vLLM, which
// samples rows at random, the first `n` rows are taken in order so that
// their timestamps form a contiguous piece of the trace to replay.
std::vector<SampleRequest> burstgpt_dataset(const std::string& path, size_t n, int vocab_size);

// One JSON object per line: {"prompt": text or [token ids], "output_tokens":
// N (optional), "prompt_len": tokens (optional), "timestamp": seconds
// (optional)}; the first `n` lines.
std::vector<SampleRequest> jsonl_dataset(const std::string& path, size_t n, int default_output_len);

// Writes requests in that format, so that several servers can be sent
// exactly the same prompts. Throws std::runtime_error on I/O failure.
void write_jsonl_dataset(const std::string& path, const std::vector<SampleRequest>& samples);

}  // namespace tidal::bench
