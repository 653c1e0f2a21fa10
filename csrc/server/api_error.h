// Errors a client can cause, in the OpenAI API's shape:
//   {"error": {"message", "type", "param", "code"}} with an HTTP status.
// Request handlers throw ApiError; the router turns it into the response.
#pragma once

#include <stdexcept>
#include <string>

namespace tidal {

class ApiError : public std::runtime_error {
 public:
  // Empty `param` / `code` are written as null.
  ApiError(int status, std::string message, std::string type, std::string param = "", std::string code = "")
      : std::runtime_error(message), status_(status), type_(std::move(type)), param_(std::move(param)),
        code_(std::move(code)) {}

  int status() const { return status_; }
  const std::string& type() const { return type_; }
  const std::string& param() const { return param_; }
  const std::string& code() const { return code_; }
  // The JSON body of the error response.
  std::string body() const;

 private:
  int status_;
  std::string type_, param_, code_;
};

// 400 invalid_request_error naming the offending field.
ApiError invalid_request(std::string message, std::string param = "", std::string code = "");
ApiError unauthorized();
ApiError model_not_found(const std::string& model);
ApiError server_error(std::string message);

}  // namespace tidal
