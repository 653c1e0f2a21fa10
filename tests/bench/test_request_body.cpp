// Request bodies and server URLs.
#include <gtest/gtest.h>

#include "request_body.h"
#include "server_url.h"

using namespace tidal::bench;
using nlohmann::json;

TEST(RequestBody, CompletionsWithTokenIds) {
  SampleRequest s;
  s.prompt_ids = {5, 6, 7};
  s.output_len = 12;
  RequestBodyOptions o;
  o.model = "m";
  o.ignore_eos = true;
  const json j = json::parse(request_body(s, o));
  EXPECT_EQ(j["model"], "m");
  EXPECT_EQ(j["prompt"], json::array({5, 6, 7}));
  EXPECT_EQ(j["max_tokens"], 12);
  EXPECT_EQ(j["temperature"], 0.0);
  EXPECT_EQ(j["stream"], true);
  EXPECT_EQ(j["stream_options"]["include_usage"], true);
  EXPECT_EQ(j["ignore_eos"], true);
}

TEST(RequestBody, ChatWithTextAndExtraBody) {
  SampleRequest s;
  s.prompt_text = "hello";
  s.output_len = 3;
  RequestBodyOptions o;
  o.endpoint = Endpoint::chat;
  o.model = "m";
  o.extra_body = {{"temperature", 0.7}, {"top_k", 5}};
  const json j = json::parse(request_body(s, o));
  EXPECT_EQ(j["messages"], json::parse(R"([{"role":"user","content":"hello"}])"));
  EXPECT_FALSE(j.contains("prompt"));
  EXPECT_FALSE(j.contains("ignore_eos"));
  EXPECT_EQ(j["temperature"], 0.7);
  EXPECT_EQ(j["top_k"], 5);
}

TEST(RequestBody, ChatRefusesTokenIds) {
  SampleRequest s;
  s.prompt_ids = {1};
  RequestBodyOptions o;
  o.endpoint = Endpoint::chat;
  EXPECT_THROW(request_body(s, o), std::invalid_argument);
}

TEST(ServerUrl, Forms) {
  const ServerUrl a = parse_server_url("http://127.0.0.1:8000");
  EXPECT_EQ(a.host, "127.0.0.1");
  EXPECT_EQ(a.port, "8000");
  EXPECT_EQ(a.api_path("/completions"), "/v1/completions");
  EXPECT_EQ(a.path("/tokenize"), "/tokenize");
  const ServerUrl b = parse_server_url("http://localhost:9/v1/");
  EXPECT_EQ(b.api_path("/chat/completions"), "/v1/chat/completions");
  EXPECT_EQ(b.path("/tokenize"), "/tokenize");
  const ServerUrl c = parse_server_url("http://example.com/proxy/v1");
  EXPECT_EQ(c.port, "80");
  EXPECT_EQ(c.api_path("/completions"), "/proxy/v1/completions");
  EXPECT_EQ(c.host_header(), "example.com:80");
  const ServerUrl d = parse_server_url("http://[::1]:8080");
  EXPECT_EQ(d.host, "::1");
  EXPECT_EQ(d.port, "8080");
  EXPECT_THROW(parse_server_url("https://x"), std::invalid_argument);
  EXPECT_THROW(parse_server_url("http://:80"), std::invalid_argument);
  EXPECT_THROW(parse_server_url("http://host:port"), std::invalid_argument);
}
