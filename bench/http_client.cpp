#include "http_client.h"

#include <boost/asio/redirect_error.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>
#include <cstdlib>
#include <limits>

#include "sse_parser.h"

namespace tidal::bench {

namespace beast = boost::beast;
namespace http = beast::http;

namespace {

http::request<http::string_body> make_post(const ServerUrl& url, const std::string& path, const std::string& body,
                                           bool stream) {
  http::request<http::string_body> req{http::verb::post, path, 11};
  req.set(http::field::host, url.host_header());
  req.set(http::field::user_agent, "tidal-bench");
  req.set(http::field::content_type, "application/json");
  req.set(http::field::accept, stream ? "text/event-stream" : "application/json");
  req.set(http::field::connection, "close");
  if (const char* key = std::getenv("OPENAI_API_KEY"); key && *key)
    req.set(http::field::authorization, std::string("Bearer ") + key);
  req.body() = body;
  req.prepare_payload();
  return req;
}

double seconds_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

// Reads the rest of a body into a string, for error responses.
awaitable<std::string> read_rest(beast::tcp_stream& stream, beast::flat_buffer& buf,
                                 http::response_parser<http::buffer_body>& parser, std::chrono::seconds timeout) {
  std::string out;
  char block[4096];
  while (!parser.is_done() && out.size() < 4096) {
    parser.get().body().data = block;
    parser.get().body().size = sizeof block;
    boost::system::error_code ec;
    stream.expires_after(timeout);
    co_await http::async_read_some(stream, buf, parser, asio::redirect_error(use_awaitable, ec));
    out.append(block, sizeof block - parser.get().body().size);
    if (ec && ec != http::error::need_buffer) break;
  }
  co_return out;
}

}  // namespace

Endpoints resolve(asio::io_context& io, const ServerUrl& url) {
  asio::ip::tcp::resolver resolver(io);
  return resolver.resolve(url.host, url.port);
}

awaitable<HttpResponse> post_json(const ServerUrl& url, const Endpoints& endpoints, const std::string& path,
                                  const std::string& body, std::chrono::seconds timeout) {
  beast::tcp_stream stream(co_await asio::this_coro::executor);
  stream.expires_after(timeout);
  co_await stream.async_connect(endpoints, use_awaitable);
  auto req = make_post(url, path, body, /*stream=*/false);
  stream.expires_after(timeout);
  co_await http::async_write(stream, req, use_awaitable);
  beast::flat_buffer buf;
  http::response_parser<http::string_body> parser;
  parser.body_limit(std::numeric_limits<std::uint64_t>::max());
  stream.expires_after(timeout);
  co_await http::async_read(stream, buf, parser, use_awaitable);
  co_return HttpResponse{static_cast<int>(parser.get().result_int()), parser.get().body()};
}

HttpResponse post_json_blocking(const ServerUrl& url, const std::string& path, const std::string& body,
                                std::chrono::seconds timeout) {
  asio::io_context io;
  const Endpoints endpoints = resolve(io, url);
  HttpResponse out;
  std::exception_ptr failure;
  asio::co_spawn(io, post_json(url, endpoints, path, body, timeout),
                 [&](std::exception_ptr e, HttpResponse r) {
                   failure = e;
                   out = std::move(r);
                 });
  io.run();
  if (failure) std::rethrow_exception(failure);
  return out;
}

awaitable<void> stream_completion(const ServerUrl& url, const Endpoints& endpoints, const std::string& path,
                                  const std::string& body, Endpoint endpoint, Clock::time_point bench_start,
                                  std::chrono::seconds idle_timeout, RequestRecord& rec) {
  const Clock::time_point sent = Clock::now();
  rec.start_s = seconds_between(bench_start, sent);
  beast::tcp_stream stream(co_await asio::this_coro::executor);
  boost::system::error_code ec;
  const char* stage = "connect";
  auto fail = [&](const boost::system::error_code& e) { rec.error = std::string(stage) + ": " + e.message(); };

  stream.expires_after(idle_timeout);
  co_await stream.async_connect(endpoints, asio::redirect_error(use_awaitable, ec));
  if (ec) co_return fail(ec);

  stage = "send";
  auto req = make_post(url, path, body, /*stream=*/true);
  stream.expires_after(idle_timeout);
  co_await http::async_write(stream, req, asio::redirect_error(use_awaitable, ec));
  if (ec) co_return fail(ec);

  stage = "receive";
  beast::flat_buffer buf;
  http::response_parser<http::buffer_body> parser;
  parser.body_limit(std::numeric_limits<std::uint64_t>::max());
  stream.expires_after(idle_timeout);
  co_await http::async_read_header(stream, buf, parser, asio::redirect_error(use_awaitable, ec));
  if (ec) co_return fail(ec);
  if (parser.get().result_int() != 200) {
    const std::string detail = co_await read_rest(stream, buf, parser, idle_timeout);
    rec.error = "HTTP " + std::to_string(parser.get().result_int()) + ": " + detail;
    co_return;
  }

  SseParser sse;
  auto handle = [&](const std::vector<std::string>& events) {
    const double t = seconds_between(sent, Clock::now());
    for (const std::string& data : events) record_chunk(rec, parse_stream_chunk(data, endpoint), t);
  };
  char block[16384];
  while (!parser.is_done()) {
    parser.get().body().data = block;
    parser.get().body().size = sizeof block;
    stream.expires_after(idle_timeout);
    // read_some returns as soon as the parser made progress, so each event
    // is timestamped when its bytes arrive, not when a buffer fills.
    co_await http::async_read_some(stream, buf, parser, asio::redirect_error(use_awaitable, ec));
    const size_t n = sizeof block - parser.get().body().size;
    if (n > 0) handle(sse.feed(std::string_view(block, n)));
    if (ec == http::error::need_buffer) continue;
    if (ec) co_return fail(ec);
  }
  handle(sse.finish());
  finish_record(rec);
}

}  // namespace tidal::bench
