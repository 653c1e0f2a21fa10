// The operators' admin API (/admin/v1/...), on the inference port but
// behind its own key: each served model's configuration and state, live
// switches of configuration, and the switch log. docs/RECONFIGURATION.md
// describes it.
#pragma once

#include <memory>
#include <string>

#include "server/http_server.h"
#include "server/serving_context.h"

namespace tidal {

// Whether `path` belongs to the admin API (it then needs the admin key).
bool is_admin_path(const std::string& path);
// Answers an admin request already authorized; throws ApiError.
void handle_admin(ServingContext& ctx, const std::shared_ptr<Exchange>& exchange, const std::string& path);

}  // namespace tidal
