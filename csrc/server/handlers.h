// The endpoint handlers behind the router. Each is called on the
// connection's strand and hands the body's parsing and tokenization to the
// request pool (request_work.h); it answers on the strand, with an
// OpenAI-shaped error for whatever the work threw.
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
