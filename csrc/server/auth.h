// API-key check: clients send `Authorization: Bearer <key>`, as the OpenAI
// SDKs do. With a key configured every endpoint requires it (vLLM leaves
// /health and /metrics open; we do not, so that nothing answers a stranger).
#pragma once

#include <string>

#include "server/http_server.h"

namespace tidal {

// True when no key is configured or the request carries exactly this key.
bool authorized(const HttpRequest& request, const std::string& api_key);

}  // namespace tidal
