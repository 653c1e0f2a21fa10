// SSE parsing must give the same events however TCP splits the bytes.
#include <gtest/gtest.h>

#include "sse_parser.h"

using tidal::bench::SseParser;

namespace {

std::vector<std::string> parse_in_pieces(const std::string& stream, const std::vector<size_t>& cuts) {
  SseParser p;
  std::vector<std::string> events;
  size_t from = 0;
  auto take = [&](std::vector<std::string> got) { events.insert(events.end(), got.begin(), got.end()); };
  for (size_t cut : cuts) {
    take(p.feed(std::string_view(stream).substr(from, cut - from)));
    from = cut;
  }
  take(p.feed(std::string_view(stream).substr(from)));
  take(p.finish());
  return events;
}

const std::string kStream =
    ": keep-alive comment\r\n\r\n"
    "data: {\"choices\":[{\"text\":\"Hel\"}]}\r\n\r\n"
    "event: message\nid: 7\ndata: {\"choices\":[{\"text\":\"lo\"}]}\n\n"
    "data:{\"a\":1}\rdata: second line\r\r"
    "data: [DONE]\n\n";

const std::vector<std::string> kEvents = {
    "{\"choices\":[{\"text\":\"Hel\"}]}",
    "{\"choices\":[{\"text\":\"lo\"}]}",
    "{\"a\":1}\nsecond line",
    "[DONE]",
};

}  // namespace

TEST(SseParser, WholeStreamAtOnce) { EXPECT_EQ(parse_in_pieces(kStream, {}), kEvents); }

TEST(SseParser, EverySingleSplitPoint) {
  for (size_t cut = 1; cut < kStream.size(); ++cut)
    EXPECT_EQ(parse_in_pieces(kStream, {cut}), kEvents) << "split at byte " << cut;
}

TEST(SseParser, EveryPairOfSplitPoints) {
  for (size_t a = 1; a < kStream.size(); ++a)
    for (size_t b = a; b < kStream.size(); ++b) ASSERT_EQ(parse_in_pieces(kStream, {a, b}), kEvents) << a << "," << b;
}

TEST(SseParser, OneByteAtATime) {
  std::vector<size_t> cuts;
  for (size_t i = 1; i < kStream.size(); ++i) cuts.push_back(i);
  EXPECT_EQ(parse_in_pieces(kStream, cuts), kEvents);
}

TEST(SseParser, CrLfSplitBetweenCrAndLfIsOneLineEnding) {
  SseParser p;
  EXPECT_TRUE(p.feed("data: x\r").empty());
  EXPECT_TRUE(p.feed("\n").empty());  // still the same line ending, not a blank line
  EXPECT_EQ(p.feed("\r\n"), std::vector<std::string>{"x"});
}

TEST(SseParser, EventsAreReturnedAsSoonAsComplete) {
  SseParser p;
  EXPECT_TRUE(p.feed("data: a\n").empty());
  EXPECT_EQ(p.feed("\ndata: b"), std::vector<std::string>{"a"});
  EXPECT_EQ(p.finish(), std::vector<std::string>{"b"});  // unterminated last event
}

TEST(SseParser, EmptyDataAndNoDataEvents) {
  SseParser p;
  EXPECT_EQ(p.feed("event: ping\n\ndata\n\ndata:\n\n"), (std::vector<std::string>{"", ""}));
}
