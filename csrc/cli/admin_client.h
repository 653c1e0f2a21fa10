// The HTTP client of `tidal admin`: one synchronous request per call to a
// `tidal serve` over plain HTTP (Boost.Beast), with the admin key as a
// Bearer token.
#pragma once

#include <string>
#include <string_view>
#include <utility>

namespace tidal {

struct AdminUrl {
  std::string host;  // an IPv6 address without its brackets
  std::string port;

  // "host:port", as the Host header and messages write it.
  std::string authority() const {
    return (host.find(':') == std::string::npos ? host : "[" + host + "]") + ":" + port;
  }
};

// Accepts http://host[:port][/path] (port 80 when absent). The path is
// dropped: the admin routes live at the server's root, so the URL the
// OpenAI clients use (".../v1") works too. Throws Error(kInvalidArgument).
AdminUrl parse_admin_url(std::string_view url);

struct AdminResponse {
  int status = 0;
  std::string body;
};

class AdminClient {
 public:
  AdminClient(AdminUrl url, std::string admin_key) : url_(std::move(url)), admin_key_(std::move(admin_key)) {}

  // Sends `method` `target` (with a JSON `body` unless it is empty) and
  // returns the response whatever its status. Throws Error(kInvalidArgument)
  // when the server cannot be reached or the connection breaks.
  AdminResponse request(std::string_view method, const std::string& target, const std::string& body = {}) const;

 private:
  AdminUrl url_;
  std::string admin_key_;
};

}  // namespace tidal
