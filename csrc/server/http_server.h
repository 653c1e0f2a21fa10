// HTTP/1.1 on Boost.Beast: an acceptor, one session per connection (keep-alive,
// size limits, timeouts) and the Exchange a handler answers through, either
// with one response or with a Server-Sent Events stream. Every session runs on
// its own strand; an Exchange's methods must be called on that strand
// (Exchange::executor()), which is where the handler is first invoked.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace tidal {

class ApiError;
class Session;
struct SessionRegistry;

using HttpRequest = boost::beast::http::request<boost::beast::http::string_body>;
using HttpHeaders = std::vector<std::pair<std::string, std::string>>;

struct HttpLimits {
  size_t max_body_bytes = size_t(8) << 20;       // larger bodies get 413
  size_t max_header_bytes = size_t(16) << 10;     // larger headers get 431
  std::chrono::seconds read_timeout{60};          // a request must arrive in full within this; also keep-alive idle
  std::chrono::seconds write_timeout{60};         // a client that reads nothing for this long is dropped
};

// One request and its response. An exchange dropped before its response
// is complete (its handler's posted work threw, or lost it) answers for
// itself: a 500, or an error event that ends a stream already begun.
class Exchange {
 public:
  // `number`: which of the session's requests this is.
  Exchange(std::shared_ptr<Session> session, HttpRequest request, uint64_t number);
  ~Exchange();
  const HttpRequest& request() const { return request_; }
  boost::asio::any_io_executor executor() const;

  // A complete response. Ignored once a response was started.
  void reply(int status, std::string body, std::string_view content_type = "application/json",
             const HttpHeaders& headers = {});
  void reply_error(const ApiError& error, HttpHeaders headers = {});

  // An SSE stream: headers now, then one `data: <payload>` event per call.
  // Payloads must not contain newlines (JSON from json_text never does).
  void begin_events();
  void send_event(std::string_view payload);
  void end_events();

  // `fn` runs once, on the strand, if the client goes away before the
  // response is complete (at once if it already has).
  void on_disconnect(std::function<void()> fn);
  bool disconnected() const;

 private:
  std::shared_ptr<Session> session_;
  HttpRequest request_;
  uint64_t number_;
  bool answered_ = false;  // reply() or end_events() was called
};

using HttpHandler = std::function<void(std::shared_ptr<Exchange>)>;

class HttpServer {
 public:
  HttpServer(boost::asio::io_context& ioc, HttpHandler handler, HttpLimits limits);
  ~HttpServer();

  // Binds and starts accepting; returns the bound port (useful with port 0).
  // Throws Error for a bad address or a port in use.
  uint16_t listen(const std::string& host, uint16_t port);
  // Closes the listening socket; open connections carry on.
  void stop_accepting();
  // Closes idle connections now and busy ones once their response is out.
  void close_connections();

 private:
  class Listener;
  boost::asio::io_context& ioc_;
  std::shared_ptr<const HttpHandler> handler_;
  std::shared_ptr<const HttpLimits> limits_;
  std::shared_ptr<SessionRegistry> registry_;
  std::shared_ptr<Listener> listener_;
};

}  // namespace tidal
