// The HTTP server in-process, on one I/O thread (tidal serve's default
// --http-threads 1), under handlers whose posted work throws.
#include "server/http_server.h"

#include <gtest/gtest.h>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>

#include "server/io_thread.h"

namespace tidal {
namespace {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;

struct Fetched {
  int status = 0;
  std::string body;
};

// GET `target` on a fresh connection; nothing when no complete response
// came within 10 s (a request left hanging).
std::optional<Fetched> fetch(uint16_t port, const std::string& target) {
  net::io_context ioc;
  beast::tcp_stream stream(ioc);
  beast::flat_buffer buffer;
  http::request<http::empty_body> request{http::verb::get, target, 11};
  request.set(http::field::host, "127.0.0.1");
  http::response<http::string_body> response;
  std::optional<Fetched> out;
  stream.async_connect(net::ip::tcp::endpoint(net::ip::make_address("127.0.0.1"), port), [&](beast::error_code ec) {
    if (ec) return;
    http::async_write(stream, request, [&](beast::error_code ec, size_t) {
      if (ec) return;
      http::async_read(stream, buffer, response, [&](beast::error_code ec, size_t) {
        if (!ec) out = Fetched{int(response.result_int()), response.body()};
      });
    });
  });
  ioc.run_for(std::chrono::seconds(10));
  return out;
}

// The OpenAI error shape: {"error": {"message", "type", "param", "code"}}.
void expect_server_error(const std::string& json) {
  const nlohmann::json body = nlohmann::json::parse(json);
  ASSERT_TRUE(body.contains("error")) << json;
  EXPECT_EQ(body["error"]["type"], "server_error");
  EXPECT_TRUE(body["error"]["message"].is_string());
  EXPECT_TRUE(body["error"].contains("param"));
  EXPECT_TRUE(body["error"].contains("code"));
}

class OneIoThread : public ::testing::Test {
 protected:
  void SetUp() override {
    port_ = server_.listen("127.0.0.1", 0);
    io_ = std::thread([this] { run_io_thread(ioc_); });
  }
  void TearDown() override {
    server_.stop_accepting();
    server_.close_connections();
    ioc_.stop();
    io_.join();
  }

  // /throw: work posted after the handler returned throws before answering.
  // /throw-stream: the same once a stream has begun. Anything else: 200.
  static void handle(const std::shared_ptr<Exchange>& exchange) {
    const auto target = exchange->request().target();
    if (target == "/throw-stream") {
      exchange->begin_events();
      exchange->send_event("first");
    }
    if (target == "/throw" || target == "/throw-stream") {
      net::post(exchange->executor(), [exchange] { throw std::runtime_error("handler bug"); });
      return;
    }
    exchange->reply(200, "{\"ok\":true}");
  }

  net::io_context ioc_{1};
  HttpServer server_{ioc_, handle, HttpLimits{}};
  uint16_t port_ = 0;
  std::thread io_;
};

TEST_F(OneIoThread, AnExceptionInPostedWorkAnswers500AndTheThreadServesOn) {
  for (int round = 0; round < 2; ++round) {
    const std::optional<Fetched> failed = fetch(port_, "/throw");
    ASSERT_TRUE(failed) << "the request whose handler threw was never answered";
    EXPECT_EQ(failed->status, 500);
    expect_server_error(failed->body);

    const std::optional<Fetched> next = fetch(port_, "/ok");
    ASSERT_TRUE(next) << "the I/O thread stopped serving";
    EXPECT_EQ(next->status, 200);
    EXPECT_EQ(next->body, "{\"ok\":true}");
  }
}

TEST_F(OneIoThread, AStreamWhoseWorkThrowsEndsWithAnErrorEvent) {
  const std::optional<Fetched> failed = fetch(port_, "/throw-stream");
  ASSERT_TRUE(failed) << "the stream whose handler threw never ended";
  EXPECT_EQ(failed->status, 200);
  const std::string first = "data: first\n\n";
  ASSERT_EQ(failed->body.substr(0, first.size()), first) << failed->body;
  const std::string rest = failed->body.substr(first.size());
  ASSERT_EQ(rest.substr(0, 6), "data: ") << rest;
  ASSERT_EQ(rest.substr(rest.size() - 2), "\n\n") << rest;
  expect_server_error(rest.substr(6, rest.size() - 8));

  const std::optional<Fetched> next = fetch(port_, "/ok");
  ASSERT_TRUE(next);
  EXPECT_EQ(next->status, 200);
}

}  // namespace
}  // namespace tidal
