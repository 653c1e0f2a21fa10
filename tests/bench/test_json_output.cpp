// The --json file's per-request records.
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>

#include "json_output.h"

using namespace tidal::bench;

TEST(JsonOutput, RecordsCarryServedTokenIdsOrNull) {
  RequestRecord with;
  StreamChunk c;
  c.content = "a";
  c.prompt_token_ids = std::vector<int32_t>{1, 2, 3};
  c.token_ids = std::vector<int32_t>{5, 6};
  record_chunk(with, c, 0.1);
  finish_record(with);
  RequestRecord without;
  without.index = 1;
  StreamChunk plain;
  plain.content = "b";
  record_chunk(without, plain, 0.1);
  finish_record(without);

  const std::string path = ::testing::TempDir() + "tidal_bench_json_output_test.json";
  write_json(path, nlohmann::json::object(), summarize({with, without}, 1.0, GoodputSlo{}), {with, without});
  std::ifstream in(path);
  const nlohmann::json doc = nlohmann::json::parse(in);
  std::remove(path.c_str());
  const auto& requests = doc.at("requests");
  ASSERT_EQ(requests.size(), 2u);
  EXPECT_EQ(requests[0].at("prompt_token_ids"), nlohmann::json({1, 2, 3}));
  EXPECT_EQ(requests[0].at("output_token_ids"), nlohmann::json({5, 6}));
  EXPECT_TRUE(requests[1].at("prompt_token_ids").is_null());
  EXPECT_TRUE(requests[1].at("output_token_ids").is_null());
}
