#include "server/request_work.h"

#include <algorithm>
#include <boost/asio/execution/outstanding_work.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/prefer.hpp>
#include <cstdio>
#include <string>

#include "core/error.h"
#include "server/api_error.h"

namespace tidal {

namespace net = boost::asio;

void prepare_off_strand(ServingContext& ctx, std::shared_ptr<Exchange> exchange,
                        std::function<Answer(const HttpRequest&)> prepare) {
  // Tracked: the HTTP threads' run() does not return while an answer is
  // still being prepared, even if nothing else is pending (at shutdown).
  auto strand = net::prefer(exchange->executor(), net::execution::outstanding_work.tracked);
  net::post(ctx.request_pool, [exchange = std::move(exchange), prepare = std::move(prepare), strand]() mutable {
    Answer answer;
    std::exception_ptr error;
    try {
      // Only the request is read here: the exchange's methods are the strand's.
      answer = prepare(exchange->request());
    } catch (...) {
      error = std::current_exception();
    }
    net::post(strand, [exchange = std::move(exchange), answer = std::move(answer), error]() mutable {
      try {
        if (error) std::rethrow_exception(error);
        answer(exchange);
      } catch (...) {
        reply_exception(*exchange, std::current_exception());
      }
    });
  });
}

void reply_exception(Exchange& exchange, std::exception_ptr error) {
  const auto target = exchange.request().target();
  const std::string path(target.data(), std::min(target.size(), target.find('?')));
  try {
    std::rethrow_exception(error);
  } catch (const ApiError& e) {
    exchange.reply_error(e);
  } catch (const Error& e) {
    const bool client_fault = e.code() == ErrorCode::kInvalidArgument || e.code() == ErrorCode::kUnsupported;
    if (!client_fault) std::fprintf(stderr, "tidal: %s failed: %s\n", path.c_str(), e.what());
    exchange.reply_error(client_fault ? invalid_request(e.what()) : server_error(e.what()));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "tidal: %s failed: %s\n", path.c_str(), e.what());
    exchange.reply_error(server_error("Internal server error."));
  } catch (...) {
    std::fprintf(stderr, "tidal: %s failed\n", path.c_str());
    exchange.reply_error(server_error("Internal server error."));
  }
}

}  // namespace tidal
