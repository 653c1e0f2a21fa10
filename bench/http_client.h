// HTTP/1.1 client on Boost.Beast for the benchmark: one connection per
// request (as vLLM's client does, so every engine pays the same connection
// cost), a JSON POST, and either the whole response or the body fed to the
// SSE parser as the bytes arrive.
#pragma once

#include <chrono>
#include <string>

#include "asio_coro.h"
#include "request_record.h"
#include "server_url.h"

namespace tidal::bench {

using Clock = std::chrono::steady_clock;
using Endpoints = asio::ip::tcp::resolver::results_type;

struct HttpResponse {
  int status = 0;
  std::string body;
};

// Resolves the server once, so requests do not pay for name lookups.
Endpoints resolve(asio::io_context& io, const ServerUrl& url);

// POSTs `body` and reads the whole response. Throws boost::system::system_error
// on connection errors and on `timeout` without progress.
awaitable<HttpResponse> post_json(const ServerUrl& url, const Endpoints& endpoints, const std::string& path,
                                  const std::string& body, std::chrono::seconds timeout);

// The same, outside a coroutine (setup calls before a run).
HttpResponse post_json_blocking(const ServerUrl& url, const std::string& path, const std::string& body,
                                std::chrono::seconds timeout);

// Sends one streaming completion request and fills `rec` (start_s relative to
// `bench_start`, timeline, usage, success or error). Never throws for
// network or HTTP errors: they are the request's error.
awaitable<void> stream_completion(const ServerUrl& url, const Endpoints& endpoints, const std::string& path,
                                  const std::string& body, Endpoint endpoint, Clock::time_point bench_start,
                                  std::chrono::seconds idle_timeout, RequestRecord& rec);

}  // namespace tidal::bench
