// Reading OpenAI-style stream events and folding them into a request timeline.
#include <gtest/gtest.h>

#include "request_record.h"
#include "stream_chunk.h"

using namespace tidal::bench;

TEST(StreamChunk, CompletionText) {
  const auto c =
      parse_stream_chunk(R"({"choices":[{"index":0,"text":"Hi","finish_reason":null}]})", Endpoint::completions);
  EXPECT_EQ(c.content, "Hi");
  EXPECT_FALSE(c.usage);
  EXPECT_FALSE(c.error);
}

TEST(StreamChunk, ChatDeltaContentAndRoleOnlyDelta) {
  EXPECT_EQ(parse_stream_chunk(R"({"choices":[{"delta":{"content":"yo"}}]})", Endpoint::chat).content, "yo");
  EXPECT_EQ(parse_stream_chunk(R"({"choices":[{"delta":{"role":"assistant","content":""}}]})", Endpoint::chat).content,
            "");
  EXPECT_EQ(parse_stream_chunk(R"({"choices":[{"delta":{"content":null}}]})", Endpoint::chat).content, "");
}

TEST(StreamChunk, UsageChunkWithEmptyChoices) {
  const auto c = parse_stream_chunk(
      R"({"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":7,"total_tokens":12}})", Endpoint::completions);
  ASSERT_TRUE(c.usage);
  EXPECT_EQ(c.usage->prompt_tokens, 5);
  EXPECT_EQ(c.usage->completion_tokens, 7);
  EXPECT_EQ(c.content, "");
}

TEST(StreamChunk, NullUsageIsNoUsage) {
  EXPECT_FALSE(parse_stream_chunk(R"({"choices":[{"text":"a"}],"usage":null})", Endpoint::completions).usage);
}

TEST(StreamChunk, DoneErrorAndGarbage) {
  const auto done = parse_stream_chunk("[DONE]", Endpoint::chat);
  EXPECT_FALSE(done.error);
  EXPECT_EQ(done.content, "");
  EXPECT_FALSE(done.usage);
  EXPECT_EQ(*parse_stream_chunk(R"({"error":{"message":"boom","type":"x"}})", Endpoint::chat).error, "boom");
  EXPECT_TRUE(parse_stream_chunk("{not json", Endpoint::chat).error);
}

TEST(RequestRecord, TimelineFromChunks) {
  RequestRecord r;
  auto text = [](const char* s) {
    StreamChunk c;
    c.content = s;
    return c;
  };
  record_chunk(r, StreamChunk{}, 0.05);  // e.g. a role-only delta: not content
  record_chunk(r, text("a"), 0.10);
  record_chunk(r, text("b"), 0.13);
  record_chunk(r, text("c"), 0.20);
  StreamChunk usage;
  usage.usage = Usage{4, 3};
  record_chunk(r, usage, 0.21);
  finish_record(r);
  EXPECT_TRUE(r.success);
  EXPECT_DOUBLE_EQ(r.ttft_s, 0.10);
  EXPECT_DOUBLE_EQ(r.latency_s, 0.20);
  ASSERT_EQ(r.itl_s.size(), 2u);
  EXPECT_NEAR(r.itl_s[0], 0.03, 1e-12);
  EXPECT_NEAR(r.itl_s[1], 0.07, 1e-12);
  EXPECT_EQ(r.generated_text, "abc");
  EXPECT_EQ(r.output_tokens(), 3);
  EXPECT_EQ(r.input_tokens(), 4);
}

TEST(RequestRecord, CountsChunksWithoutUsage) {
  RequestRecord r;
  r.prompt_len = 9;
  StreamChunk c;
  c.content = "x";
  record_chunk(r, c, 0.1);
  record_chunk(r, c, 0.2);
  finish_record(r);
  EXPECT_EQ(r.output_tokens(), 2);
  EXPECT_EQ(r.input_tokens(), 9);
}

TEST(StreamChunk, FinishReason) {
  EXPECT_EQ(parse_stream_chunk(R"({"choices":[{"text":"","finish_reason":"length"}]})", Endpoint::completions)
                .finish_reason,
            "length");
  EXPECT_EQ(parse_stream_chunk(R"({"choices":[{"delta":{},"finish_reason":null}]})", Endpoint::chat).finish_reason, "");
}

TEST(RequestRecord, OutputTokensPreferUsageThenMaxTokensThenRetokenizedThenChunks) {
  RequestRecord r;
  r.success = true;
  r.expected_output_len = 8;
  r.content_chunks = 5;
  EXPECT_EQ(r.output_tokens(), 5);
  EXPECT_STREQ(r.output_tokens_source(), "chunks");
  EXPECT_TRUE(r.needs_retokenizing());
  r.retokenized_output = 7;
  EXPECT_EQ(r.output_tokens(), 7);
  EXPECT_STREQ(r.output_tokens_source(), "retokenized");
  StreamChunk last;
  last.finish_reason = "length";  // stopped by max_tokens: exactly 8 tokens
  record_chunk(r, last, 1.0);
  EXPECT_EQ(r.output_tokens(), 8);
  EXPECT_STREQ(r.output_tokens_source(), "max_tokens");
  EXPECT_FALSE(r.needs_retokenizing());
  r.usage = Usage{3, 0};  // a zero count is no count (vLLM's `if not output_len`)
  EXPECT_EQ(r.output_tokens(), 8);
  r.usage = Usage{3, 9};
  EXPECT_EQ(r.output_tokens(), 9);
  EXPECT_STREQ(r.output_tokens_source(), "usage");
}

TEST(RequestRecord, NoContentOrErrorFails) {
  RequestRecord empty;
  finish_record(empty);
  EXPECT_FALSE(empty.success);
  EXPECT_FALSE(empty.error.empty());

  RequestRecord errored;
  StreamChunk c;
  c.content = "x";
  record_chunk(errored, c, 0.1);
  StreamChunk e;
  e.error = "engine died";
  record_chunk(errored, e, 0.2);
  finish_record(errored);
  EXPECT_FALSE(errored.success);
  EXPECT_EQ(errored.error, "engine died");
}

TEST(StreamChunk, TokenIdsExtension) {
  // Completions: the ids on the choice, the prompt's on the first chunk.
  const auto first = parse_stream_chunk(
      R"({"prompt_token_ids":[1,2,3],"choices":[{"text":"Hi","token_ids":[7,8],"finish_reason":null}]})",
      Endpoint::completions);
  ASSERT_TRUE(first.prompt_token_ids);
  EXPECT_EQ(*first.prompt_token_ids, (std::vector<int32_t>{1, 2, 3}));
  ASSERT_TRUE(first.token_ids);
  EXPECT_EQ(*first.token_ids, (std::vector<int32_t>{7, 8}));
  // Chat: ids on the choice beside the delta; vLLM's completions put the prompt's on the choice.
  const auto chat = parse_stream_chunk(R"({"choices":[{"delta":{"content":""},"token_ids":[9]}]})", Endpoint::chat);
  EXPECT_EQ(chat.content, "");
  EXPECT_EQ(*chat.token_ids, std::vector<int32_t>{9});
  EXPECT_FALSE(chat.prompt_token_ids);
  EXPECT_EQ(*parse_stream_chunk(R"({"choices":[{"text":"","prompt_token_ids":[4]}]})", Endpoint::completions)
                 .prompt_token_ids,
            std::vector<int32_t>{4});
  // Without the extension, or with something that is not a list of ids: absent.
  const auto plain = parse_stream_chunk(R"({"choices":[{"text":"a"}]})", Endpoint::completions);
  EXPECT_FALSE(plain.token_ids);
  EXPECT_FALSE(plain.prompt_token_ids);
  EXPECT_FALSE(parse_stream_chunk(R"({"choices":[{"text":"a","token_ids":null}]})", Endpoint::completions).token_ids);
  EXPECT_FALSE(parse_stream_chunk(R"({"choices":[{"text":"a","token_ids":["x"]}]})", Endpoint::completions).token_ids);
  EXPECT_TRUE(parse_stream_chunk(R"({"choices":[{"text":"","token_ids":[]}]})", Endpoint::completions).token_ids);
}

TEST(RequestRecord, ConcatenatesServedTokenIdsIncludingTextlessChunks) {
  RequestRecord r;
  StreamChunk first;
  first.prompt_token_ids = std::vector<int32_t>{1, 2};
  record_chunk(r, first, 0.05);  // e.g. a role-only delta carrying the prompt's ids
  StreamChunk a;
  a.content = "a";
  a.token_ids = std::vector<int32_t>{10};
  record_chunk(r, a, 0.10);
  StreamChunk partial;  // a token ending mid-character: ids, no text yet
  partial.token_ids = std::vector<int32_t>{11};
  record_chunk(r, partial, 0.12);
  StreamChunk rest;
  rest.content = "\xc3\xa9";
  rest.token_ids = std::vector<int32_t>{12, 13};
  rest.prompt_token_ids = std::vector<int32_t>{99};  // only the first prompt_token_ids counts
  record_chunk(r, rest, 0.15);
  finish_record(r);
  EXPECT_TRUE(r.success);
  ASSERT_TRUE(r.prompt_token_ids);
  EXPECT_EQ(*r.prompt_token_ids, (std::vector<int32_t>{1, 2}));
  ASSERT_TRUE(r.output_token_ids);
  EXPECT_EQ(*r.output_token_ids, (std::vector<int32_t>{10, 11, 12, 13}));
  EXPECT_EQ(r.content_chunks, 2);  // the timeline still counts content chunks only
  EXPECT_DOUBLE_EQ(r.ttft_s, 0.10);

  RequestRecord without;
  StreamChunk c;
  c.content = "x";
  record_chunk(without, c, 0.1);
  finish_record(without);
  EXPECT_FALSE(without.prompt_token_ids);
  EXPECT_FALSE(without.output_token_ids);
}
