#include "server/http_server.h"

#include <array>
#include <atomic>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <cstdio>
#include <mutex>
#include <optional>
#include <unordered_map>

#include "core/error.h"
#include "server/api_error.h"

namespace tidal {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;

struct SessionRegistry {
  std::mutex mutex;
  std::unordered_map<Session*, std::weak_ptr<Session>> sessions;
  std::atomic<bool> closing{false};
};

namespace {

// Bytes a client may pipeline behind a request before we stop reading ahead
// (and so stop noticing its disconnect until the response is out).
constexpr size_t kMaxReadAhead = 64 << 10;
// After an error response to a request that was not read in full (413, bad
// syntax), the rest is read and dropped for a while before closing: closing
// with data unread would reset the connection and could destroy the response
// before the client reads it.
constexpr size_t kMaxDrainBytes = size_t(64) << 20;
constexpr std::chrono::seconds kDrainTimeout{5};

}  // namespace

class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket socket, std::shared_ptr<const HttpHandler> handler, std::shared_ptr<const HttpLimits> limits,
          std::shared_ptr<SessionRegistry> registry)
      : stream_(std::move(socket)), handler_(std::move(handler)), limits_(std::move(limits)),
        registry_(std::move(registry)) {}

  ~Session() {
    std::lock_guard<std::mutex> lock(registry_->mutex);
    registry_->sessions.erase(this);
  }

  void start() {
    {
      std::lock_guard<std::mutex> lock(registry_->mutex);
      registry_->sessions.emplace(this, weak_from_this());
    }
    net::dispatch(stream_.get_executor(), [self = shared_from_this()] { self->read_request(); });
  }

  net::any_io_executor executor() { return stream_.get_executor(); }

  void close_if_idle() {
    if (!in_exchange_) close();
  }

  void reply(int status, std::string body, std::string_view content_type, const HttpHeaders& headers) {
    if (closed_ || response_started_) return;
    response_started_ = response_complete_ = true;
    std::string out = head(status, content_type, headers, "Content-Length: " + std::to_string(body.size()) + "\r\n");
    if (!head_request_) out += body;
    queue_write(out);
  }

  void begin_events() {
    if (closed_ || response_started_) return;
    response_started_ = true;
    // HTTP/1.0 has no chunked encoding: the stream ends with the connection.
    chunked_ = !http10_;
    if (http10_) keep_alive_ = false;
    queue_write(head(200, "text/event-stream", {{"Cache-Control", "no-cache"}},
                     chunked_ ? "Transfer-Encoding: chunked\r\n" : ""));
  }

  void send_event(std::string_view payload) {
    if (closed_ || !response_started_ || response_complete_) return;
    std::string event = "data: ";
    event += payload;
    event += "\n\n";
    if (!chunked_) return queue_write(event);
    char size[24];
    std::snprintf(size, sizeof size, "%zx\r\n", event.size());
    queue_write(size + event + "\r\n");
  }

  void end_events() {
    if (closed_ || !response_started_ || response_complete_) return;
    response_complete_ = true;
    if (chunked_) {
      queue_write("0\r\n\r\n");
    } else if (!writing_) {
      after_response();
    }
  }

  void on_disconnect(std::function<void()> fn) {
    if (disconnected_) {
      fn();
    } else {
      on_disconnect_ = std::move(fn);
    }
  }
  bool disconnected() const { return disconnected_; }

  // Exchange `number` was dropped unanswered: nobody else can answer it.
  void abandoned(uint64_t number) {
    if (closed_ || number != exchanges_ || !in_exchange_ || response_complete_) return;
    const ApiError error = server_error("The server failed to answer this request.");
    if (!response_started_) return reply(error.status(), error.body(), "application/json", {});
    send_event(error.body());
    end_events();
  }

 private:
  void read_request() {
    if (closed_) return;
    if (registry_->closing) return close();
    ++exchanges_;  // an abandoned earlier exchange must not answer this one
    in_exchange_ = response_started_ = response_complete_ = chunked_ = false;
    on_disconnect_ = nullptr;
    parser_.emplace();
    parser_->body_limit(limits_->max_body_bytes);
    parser_->header_limit(std::uint32_t(limits_->max_header_bytes));
    stream_.expires_after(limits_->read_timeout);
    http::async_read_header(stream_, buffer_, *parser_,
                            [self = shared_from_this()](beast::error_code ec, size_t) { self->on_header(ec); });
  }

  void on_header(beast::error_code ec) {
    if (closed_) return;
    if (ec) return on_read_error(ec);
    // curl and others wait for this before sending a body.
    if (beast::iequals(parser_->get()[http::field::expect], "100-continue") && !parser_->is_done()) {
      interim_ = "HTTP/1.1 100 Continue\r\n\r\n";
      net::async_write(stream_, net::buffer(interim_), [self = shared_from_this()](beast::error_code ec, size_t) {
        if (self->closed_) return;
        if (ec) return self->close();
        self->read_body();
      });
      return;
    }
    read_body();
  }

  void read_body() {
    http::async_read(stream_, buffer_, *parser_,
                     [self = shared_from_this()](beast::error_code ec, size_t) { self->on_body(ec); });
  }

  void on_body(beast::error_code ec) {
    if (closed_) return;
    if (ec) return on_read_error(ec);
    HttpRequest request = parser_->release();
    keep_alive_ = request.keep_alive();
    http10_ = request.version() < 11;
    head_request_ = request.method() == http::verb::head;
    in_exchange_ = true;
    disconnected_ = false;
    stream_.expires_never();
    auto exchange = std::make_shared<Exchange>(shared_from_this(), std::move(request), exchanges_);
    try {
      (*handler_)(exchange);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "tidal: request handler failed: %s\n", e.what());
      if (!response_started_) return reply_error_and_close(server_error("internal error"));
      return close();
    }
    // Until the response is out, keep reading so that a client that goes
    // away is noticed (and its request aborted) at once.
    if (!response_complete_ && !closed_) start_watch();
  }

  void on_read_error(beast::error_code ec) {
    if (ec == http::error::body_limit) {
      return reply_error_and_close(ApiError(413,
                                            "Request body too large: the limit is " +
                                                std::to_string(limits_->max_body_bytes) + " bytes.",
                                            "invalid_request_error"));
    }
    if (ec == http::error::header_limit) {
      return reply_error_and_close(ApiError(431, "Request headers too large.", "invalid_request_error"));
    }
    const bool http_syntax = ec.category() == beast::error_code(http::error::bad_target).category();
    if (http_syntax && ec != http::error::end_of_stream && ec != http::error::partial_message) {
      return reply_error_and_close(invalid_request("Malformed HTTP request: " + ec.message()));
    }
    close();  // the client left, went quiet past the timeout, or we are shutting down
  }

  void reply_error_and_close(const ApiError& error) {
    in_exchange_ = true;
    unread_input_ = true;
    keep_alive_ = false;
    head_request_ = false;
    http10_ = false;
    reply(error.status(), error.body(), "application/json", {});
  }

  std::string head(int status, std::string_view content_type, const HttpHeaders& headers, std::string_view framing) {
    if (registry_->closing) keep_alive_ = false;
    std::string h = "HTTP/1.1 " + std::to_string(status) + " ";
    const auto reason = http::obsolete_reason(http::int_to_status(unsigned(status)));
    h.append(reason.data(), reason.size());
    h += "\r\nServer: tidal\r\nContent-Type: ";
    h += content_type;
    h += "\r\n";
    for (const auto& [name, value] : headers) h += name + ": " + value + "\r\n";
    h += framing;
    h += keep_alive_ ? "Connection: keep-alive\r\n\r\n" : "Connection: close\r\n\r\n";
    return h;
  }

  // Writes go out one at a time; bytes queued meanwhile are sent together.
  void queue_write(std::string_view bytes) {
    if (closed_) return;
    pending_.append(bytes);
    if (!writing_) flush();
  }

  void flush() {
    writing_ = true;
    inflight_.swap(pending_);
    pending_.clear();
    stream_.expires_after(limits_->write_timeout);
    net::async_write(stream_, net::buffer(inflight_),
                     [self = shared_from_this()](beast::error_code ec, size_t) { self->on_write(ec); });
  }

  void on_write(beast::error_code ec) {
    writing_ = false;
    if (closed_) return;
    if (ec) return lost_client();
    if (!pending_.empty()) return flush();
    if (response_complete_) after_response();
  }

  void start_watch() {
    if (buffer_.size() >= kMaxReadAhead) return;
    watching_ = true;
    stream_.expires_never();
    stream_.async_read_some(buffer_.prepare(4096), [self = shared_from_this()](beast::error_code ec, size_t n) {
      self->on_watch(ec, n);
    });
  }

  void on_watch(beast::error_code ec, size_t n) {
    watching_ = false;
    buffer_.commit(n);  // pipelined bytes stay for the next request
    if (closed_) return;
    if (!in_exchange_) {
      // after_response() cancelled us to move on.
      if (ec && ec != net::error::operation_aborted) return close();
      return continue_connection();
    }
    if (ec) return lost_client();
    start_watch();
  }

  void after_response() {
    in_exchange_ = false;
    if (watching_) {
      beast::error_code ignored;
      stream_.socket().cancel(ignored);  // on_watch continues the connection
      return;
    }
    continue_connection();
  }

  void continue_connection() {
    if (keep_alive_ && !registry_->closing) return read_request();
    if (!unread_input_) return close();
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
    stream_.expires_after(kDrainTimeout);
    drain();
  }

  void drain() {
    stream_.async_read_some(net::buffer(scratch_), [self = shared_from_this()](beast::error_code ec, size_t n) {
      if (self->closed_) return;
      self->drained_ += n;
      if (ec || self->drained_ > kMaxDrainBytes) return self->close();
      self->drain();
    });
  }

  void lost_client() {
    if (disconnected_) return;
    disconnected_ = true;
    std::function<void()> fn = std::move(on_disconnect_);
    on_disconnect_ = nullptr;
    close();
    if (fn) fn();
  }

  void close() {
    if (closed_) return;
    closed_ = true;
    in_exchange_ = false;
    pending_.clear();
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_both, ignored);
    stream_.close();
  }

  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  std::shared_ptr<const HttpHandler> handler_;
  std::shared_ptr<const HttpLimits> limits_;
  std::shared_ptr<SessionRegistry> registry_;

  bool in_exchange_ = false;        // a request was read; its response is not fully written
  bool response_started_ = false;
  bool response_complete_ = false;  // every byte of the response is queued
  bool chunked_ = false;
  bool keep_alive_ = false;
  bool http10_ = false;
  bool head_request_ = false;
  bool unread_input_ = false;       // the request was refused before it was read in full
  bool watching_ = false;
  bool writing_ = false;
  bool disconnected_ = false;
  bool closed_ = false;
  uint64_t exchanges_ = 0;          // requests begun on this connection
  std::function<void()> on_disconnect_;
  std::string interim_;
  std::string pending_, inflight_;
  std::array<char, 16384> scratch_;
  size_t drained_ = 0;
};

Exchange::Exchange(std::shared_ptr<Session> session, HttpRequest request, uint64_t number)
    : session_(std::move(session)), request_(std::move(request)), number_(number) {}

Exchange::~Exchange() {
  if (answered_) return;
  // The last owner may be on any thread (an engine sink, say): the session
  // is touched only on its strand.
  const net::any_io_executor strand = session_->executor();
  net::post(strand, [session = std::move(session_), number = number_] { session->abandoned(number); });
}

net::any_io_executor Exchange::executor() const { return session_->executor(); }

void Exchange::reply(int status, std::string body, std::string_view content_type, const HttpHeaders& headers) {
  answered_ = true;
  session_->reply(status, std::move(body), content_type, headers);
}

void Exchange::reply_error(const ApiError& error, HttpHeaders headers) {
  if (error.status() == 401) headers.emplace_back("WWW-Authenticate", "Bearer");
  if (error.status() == 429) headers.emplace_back("Retry-After", "1");
  answered_ = true;
  session_->reply(error.status(), error.body(), "application/json", headers);
}

void Exchange::begin_events() { session_->begin_events(); }
void Exchange::send_event(std::string_view payload) { session_->send_event(payload); }
void Exchange::end_events() {
  answered_ = true;
  session_->end_events();
}
void Exchange::on_disconnect(std::function<void()> fn) { session_->on_disconnect(std::move(fn)); }
bool Exchange::disconnected() const { return session_->disconnected(); }

class HttpServer::Listener : public std::enable_shared_from_this<Listener> {
 public:
  Listener(net::io_context& ioc, std::shared_ptr<const HttpHandler> handler, std::shared_ptr<const HttpLimits> limits,
           std::shared_ptr<SessionRegistry> registry)
      : ioc_(ioc), acceptor_(net::make_strand(ioc)), retry_(acceptor_.get_executor()), handler_(std::move(handler)),
        limits_(std::move(limits)), registry_(std::move(registry)) {}

  uint16_t listen(const std::string& host, uint16_t port) {
    const std::string where = host + ":" + std::to_string(port);
    beast::error_code ec;
    tcp::resolver resolver(ioc_);
    auto results = resolver.resolve(host, std::to_string(port), tcp::resolver::passive, ec);
    if (ec || results.empty()) throw Error(ErrorCode::kInvalidArgument, "cannot resolve " + where + ": " + ec.message());
    const tcp::endpoint endpoint = results.begin()->endpoint();
    acceptor_.open(endpoint.protocol(), ec);
    if (!ec) acceptor_.set_option(net::socket_base::reuse_address(true), ec);
    if (!ec) acceptor_.bind(endpoint, ec);
    if (!ec) acceptor_.listen(net::socket_base::max_listen_connections, ec);
    if (ec) throw Error(ErrorCode::kInvalidArgument, "cannot listen on " + where + ": " + ec.message());
    const uint16_t bound = acceptor_.local_endpoint().port();
    net::dispatch(acceptor_.get_executor(), [self = shared_from_this()] { self->accept(); });
    return bound;
  }

  void stop() {
    net::dispatch(acceptor_.get_executor(), [self = shared_from_this()] {
      beast::error_code ignored;
      self->acceptor_.close(ignored);
      self->retry_.cancel();
    });
  }

 private:
  void accept() {
    acceptor_.async_accept(net::make_strand(ioc_), [self = shared_from_this()](beast::error_code ec, tcp::socket s) {
      self->on_accept(ec, std::move(s));
    });
  }

  void on_accept(beast::error_code ec, tcp::socket socket) {
    if (!acceptor_.is_open()) return;
    if (ec) {
      // E.g. out of file descriptors: back off rather than spin.
      retry_.expires_after(std::chrono::milliseconds(100));
      retry_.async_wait([self = shared_from_this()](beast::error_code ec) {
        if (!ec) self->accept();
      });
      return;
    }
    beast::error_code ignored;
    socket.set_option(tcp::no_delay(true), ignored);  // one SSE event per token: no Nagle delay
    std::make_shared<Session>(std::move(socket), handler_, limits_, registry_)->start();
    accept();
  }

  net::io_context& ioc_;
  tcp::acceptor acceptor_;
  net::steady_timer retry_;
  std::shared_ptr<const HttpHandler> handler_;
  std::shared_ptr<const HttpLimits> limits_;
  std::shared_ptr<SessionRegistry> registry_;
};

HttpServer::HttpServer(net::io_context& ioc, HttpHandler handler, HttpLimits limits)
    : ioc_(ioc), handler_(std::make_shared<const HttpHandler>(std::move(handler))),
      limits_(std::make_shared<const HttpLimits>(limits)), registry_(std::make_shared<SessionRegistry>()) {}

HttpServer::~HttpServer() = default;

uint16_t HttpServer::listen(const std::string& host, uint16_t port) {
  listener_ = std::make_shared<Listener>(ioc_, handler_, limits_, registry_);
  return listener_->listen(host, port);
}

void HttpServer::stop_accepting() {
  if (listener_) listener_->stop();
}

void HttpServer::close_connections() {
  registry_->closing = true;
  std::vector<std::shared_ptr<Session>> sessions;
  {
    std::lock_guard<std::mutex> lock(registry_->mutex);
    for (auto& [raw, weak] : registry_->sessions)
      if (auto s = weak.lock()) sessions.push_back(std::move(s));
  }
  for (auto& s : sessions) net::post(s->executor(), [s] { s->close_if_idle(); });
}

}  // namespace tidal
