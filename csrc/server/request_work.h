// Request work kept off the HTTP threads. Parsing a JSON body of up to
// --max-body-mb, rendering chat templates and tokenizing prompts take
// seconds for the largest bodies; on an HTTP thread that would stall every
// connection the thread serves (with the default --http-threads 1, every
// stream). Endpoints that do such work hand it to the server's request pool
// (--request-threads); only its result comes back to the connection's strand.
#pragma once

#include <exception>
#include <functional>
#include <memory>

#include "server/http_server.h"
#include "server/serving_context.h"

namespace tidal {

// What runs on the exchange's strand once the work is done: it answers
// (e.g. replies, or submits to the engine).
using Answer = std::function<void(std::shared_ptr<Exchange>)>;

// Runs `prepare` on ctx.request_pool with the request, then the Answer it
// returns on the exchange's strand. Work waits in the pool's queue (first
// come, first served) while every worker is busy; nothing is dropped. What
// either step throws is answered as reply_exception does. Call on the strand.
void prepare_off_strand(ServingContext& ctx, std::shared_ptr<Exchange> exchange,
                        std::function<Answer(const HttpRequest&)> prepare);

// Answers `error` in the OpenAI shape: an ApiError as it is, a client's
// tidal::Error (invalid argument, unsupported) as 400, anything else as a
// logged 500. Call on the exchange's strand.
void reply_exception(Exchange& exchange, std::exception_ptr error);

}  // namespace tidal
