#include "server/api_error.h"

#include <nlohmann/json.hpp>

#include "server/json_text.h"

namespace tidal {

std::string ApiError::body() const {
  auto or_null = [](const std::string& s) { return s.empty() ? nlohmann::json(nullptr) : nlohmann::json(s); };
  const nlohmann::json j = {{"error",
                             {{"message", what()}, {"type", type_}, {"param", or_null(param_)}, {"code", or_null(code_)}}}};
  return json_text(j);
}

ApiError invalid_request(std::string message, std::string param, std::string code) {
  return ApiError(400, std::move(message), "invalid_request_error", std::move(param), std::move(code));
}

ApiError unauthorized() {
  return ApiError(401, "Incorrect API key provided. Pass it as 'Authorization: Bearer <key>'.",
                  "invalid_request_error", "", "invalid_api_key");
}

ApiError model_not_found(const std::string& model) {
  return ApiError(404, "The model `" + model + "` does not exist.", "invalid_request_error", "model",
                  "model_not_found");
}

ApiError server_error(std::string message) { return ApiError(500, std::move(message), "server_error"); }

}  // namespace tidal
