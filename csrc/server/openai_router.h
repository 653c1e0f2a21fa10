// The HTTP handler of `tidal serve`: checks the API key, maps method and
// path to an endpoint, and turns whatever an endpoint throws into an
// OpenAI-shaped error response, so that no request can stop the server.
#pragma once

#include <memory>
#include <string>

#include "server/http_server.h"
#include "server/serving_context.h"

namespace tidal {

class OpenAiRouter {
 public:
  // An empty `api_key` leaves every endpoint open.
  OpenAiRouter(ServingContext& ctx, std::string api_key) : ctx_(ctx), api_key_(std::move(api_key)) {}

  void operator()(const std::shared_ptr<Exchange>& exchange) const;

 private:
  void dispatch(const std::shared_ptr<Exchange>& exchange, const std::string& path) const;

  ServingContext& ctx_;
  std::string api_key_;
};

}  // namespace tidal
