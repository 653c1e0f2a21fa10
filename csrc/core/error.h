// Error type used inside one thread of tidal. Module boundaries that cross
// threads (engine loop <-> HTTP) convert these into values; exceptions never
// cross a thread boundary.
#pragma once

#include <stdexcept>
#include <string>

namespace tidal {

enum class ErrorCode {
  kInvalidArgument,  // caller passed something we cannot accept
  kNotFound,         // missing file, unknown tensor, unknown model
  kCorrupt,          // file exists but its contents are malformed
  kUnsupported,      // well-formed but a feature we do not implement
  kResourceExhausted,
  kInternal,
};

class Error : public std::runtime_error {
 public:
  Error(ErrorCode code, const std::string& message) : std::runtime_error(message), code_(code) {}
  ErrorCode code() const { return code_; }

 private:
  ErrorCode code_;
};

}  // namespace tidal
