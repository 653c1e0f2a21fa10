// The endpoint handlers behind the router. Each runs on the connection's
// strand, reads the JSON body, and either answers or throws ApiError.
#pragma once

#include <memory>

#include "server/http_server.h"
#include "server/serving_context.h"

namespace tidal {

void handle_completions(ServingContext& ctx, std::shared_ptr<Exchange> exchange);       // POST /v1/completions
void handle_chat_completions(ServingContext& ctx, std::shared_ptr<Exchange> exchange);  // POST /v1/chat/completions
void handle_tokenize(ServingContext& ctx, std::shared_ptr<Exchange> exchange);          // POST /tokenize
void handle_detokenize(ServingContext& ctx, std::shared_ptr<Exchange> exchange);        // POST /detokenize

}  // namespace tidal
