// The server a benchmark talks to, from --base-url. Plain HTTP only.
// "http://host:port", "http://host:port/v1" and a path prefix before /v1
// all name the same server; the OpenAI routes are under <root>/v1 and
// vendor routes such as /tokenize under <root>.
#pragma once

#include <string>
#include <string_view>

namespace tidal::bench {

struct ServerUrl {
  std::string host;
  std::string port;
  std::string root;  // path prefix without the trailing "/v1" or '/'; often empty

  std::string api_path(std::string_view route) const { return root + "/v1" + std::string(route); }
  std::string path(std::string_view route) const { return root + std::string(route); }
  std::string host_header() const { return host + ":" + port; }
};

// Throws std::invalid_argument for anything but http://host[:port][/path].
ServerUrl parse_server_url(std::string_view url);

}  // namespace tidal::bench
