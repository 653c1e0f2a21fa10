// The streaming client and the runner against a scripted server on
// loopback: a response split across HTTP chunks and TCP writes, an HTTP
// error, a refused connection, and --max-concurrency.
#include <gtest/gtest.h>

#include <atomic>
#include <boost/asio/read.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/write.hpp>
#include <chrono>
#include <cstdio>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "asio_coro.h"
#include "runner.h"

using namespace tidal::bench;
using asio::ip::tcp;

namespace {

std::string http_chunk(const std::string& data) {
  char size[16];
  std::snprintf(size, sizeof size, "%zx", data.size());
  return std::string(size) + "\r\n" + data + "\r\n";
}

// Serves `connections` connections one after another, each answered with the
// same scripted pieces, written separately so they reach the client in
// separate reads. Records each request's target and body.
class ScriptedServer {
 public:
  ScriptedServer(std::vector<std::string> pieces, int connections)
      : acceptor_(io_, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)), pieces_(std::move(pieces)) {
    port_ = acceptor_.local_endpoint().port();
    thread_ = std::thread([this, connections] { serve(connections); });
  }
  ~ScriptedServer() {
    acceptor_.close();
    thread_.join();
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  std::vector<std::pair<std::string, std::string>> requests() {
    std::lock_guard<std::mutex> lock(mu_);
    return requests_;
  }

 private:
  void serve(int connections) {
    for (int i = 0; i < connections; ++i) {
      boost::system::error_code ec;
      tcp::socket s(io_);
      acceptor_.accept(s, ec);
      if (ec) return;
      asio::streambuf buf;
      const size_t header_len = asio::read_until(s, buf, "\r\n\r\n", ec);
      if (ec) continue;
      std::string all(asio::buffers_begin(buf.data()), asio::buffers_end(buf.data()));
      const std::string head = all.substr(0, header_len);
      size_t content_length = 0;
      if (auto at = head.find("Content-Length: "); at != std::string::npos)
        content_length = std::stoul(head.substr(at + 16));
      std::string body = all.substr(header_len);
      if (body.size() < content_length) {
        std::string rest(content_length - body.size(), '\0');
        asio::read(s, asio::buffer(rest), ec);
        body += rest;
      }
      {
        std::lock_guard<std::mutex> lock(mu_);
        requests_.emplace_back(head.substr(0, head.find("\r\n")), body);
      }
      for (const std::string& piece : pieces_) {
        asio::write(s, asio::buffer(piece), ec);
        // Gives the client a chance to read each piece on its own; the
        // assertions do not depend on it.
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
      }
      s.shutdown(tcp::socket::shutdown_both, ec);
    }
  }

  asio::io_context io_;
  tcp::acceptor acceptor_;
  std::vector<std::string> pieces_;
  unsigned short port_ = 0;
  std::thread thread_;
  std::mutex mu_;
  std::vector<std::pair<std::string, std::string>> requests_;
};

std::vector<std::string> sse_response() {
  const std::string ev1 = "data: {\"choices\":[{\"index\":0,\"text\":\"Hello\"}]}\n\n";
  const std::string ev2 = "data: {\"choices\":[{\"index\":0,\"text\":\" world\"}]}\n\n";
  const std::string usage = "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":2}}\n\n";
  const std::string done = "data: [DONE]\n\n";
  const std::string c1 = http_chunk(ev1.substr(0, 20));
  const std::string c2 = http_chunk(ev1.substr(20) + ev2.substr(0, 7));
  const std::string c3 = http_chunk(ev2.substr(7) + usage + done);
  return {
      "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n",
      c1.substr(0, 3), c1.substr(3) + c2.substr(0, 10), c2.substr(10), c3, "0\r\n\r\n",
  };
}

RunOptions options_for(const std::string& url) {
  RunOptions o;
  o.url = parse_server_url(url);
  o.body.model = "test-model";
  o.idle_timeout = std::chrono::seconds(10);
  return o;
}

SampleRequest sample() {
  SampleRequest s;
  s.prompt_ids = {1, 2, 3};
  s.prompt_len = 3;
  s.output_len = 2;
  return s;
}

}  // namespace

TEST(HttpClient, StreamSplitAcrossChunksAndReads) {
  ScriptedServer server(sse_response(), 1);
  Progress quiet(1, false);
  const RunResult r = run_benchmark({sample()}, {0.0}, options_for(server.url()), quiet);
  ASSERT_EQ(r.records.size(), 1u);
  const RequestRecord& rec = r.records[0];
  EXPECT_TRUE(rec.success) << rec.error;
  EXPECT_EQ(rec.generated_text, "Hello world");
  EXPECT_EQ(rec.content_chunks, 2);
  ASSERT_TRUE(rec.usage);
  EXPECT_EQ(rec.usage->prompt_tokens, 3);
  EXPECT_EQ(rec.usage->completion_tokens, 2);
  ASSERT_EQ(rec.itl_s.size(), 1u);
  EXPECT_GT(rec.ttft_s, 0);
  EXPECT_NEAR(rec.latency_s, rec.ttft_s + rec.itl_s[0], 1e-9);
  EXPECT_GE(r.duration_s, rec.start_s + rec.latency_s);

  const auto reqs = server.requests();
  ASSERT_EQ(reqs.size(), 1u);
  EXPECT_EQ(reqs[0].first, "POST /v1/completions HTTP/1.1");
  const auto body = nlohmann::json::parse(reqs[0].second);
  EXPECT_EQ(body["prompt"], nlohmann::json::array({1, 2, 3}));
  EXPECT_EQ(body["stream"], true);
  EXPECT_EQ(body["stream_options"]["include_usage"], true);
}

TEST(HttpClient, HttpErrorIsTheRequestsError) {
  ScriptedServer server(
      {"HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\nContent-Length: 15\r\n\r\n",
       "{\"error\":\"bad\"}"},
      1);
  Progress quiet(1, false);
  const RunResult r = run_benchmark({sample()}, {0.0}, options_for(server.url()), quiet);
  EXPECT_FALSE(r.records[0].success);
  EXPECT_EQ(r.records[0].error, "HTTP 500: {\"error\":\"bad\"}");
}

TEST(HttpClient, RefusedConnectionFails) {
  unsigned short port;
  {
    asio::io_context io;
    tcp::acceptor a(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
    port = a.local_endpoint().port();
  }  // closed: nothing listens there now
  Progress quiet(2, false);
  const RunResult r =
      run_benchmark({sample(), sample()}, {0.0, 0.0}, options_for("http://127.0.0.1:" + std::to_string(port)), quiet);
  for (const auto& rec : r.records) {
    EXPECT_FALSE(rec.success);
    EXPECT_EQ(rec.error.rfind("connect: ", 0), 0u) << rec.error;
  }
}

TEST(HttpClient, MaxConcurrencyOneSerializesRequests) {
  ScriptedServer server(sse_response(), 3);
  RunOptions o = options_for(server.url());
  o.max_concurrency = 1;
  Progress quiet(3, false);
  const RunResult r = run_benchmark({sample(), sample(), sample()}, {0.0, 0.0, 0.0}, o, quiet);
  ASSERT_EQ(r.records.size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_TRUE(r.records[i].success) << r.records[i].error;
    EXPECT_EQ(r.records[i].index, i);
  }
  for (size_t i = 1; i < 3; ++i)
    EXPECT_GE(r.records[i].start_s, r.records[i - 1].start_s + r.records[i - 1].latency_s);
}
