#include "server/auth.h"

#include <boost/beast/core/string.hpp>

namespace tidal {

namespace {

// Compares without an early exit, so response time does not reveal how many
// leading characters of a guess were right. `key` is not empty.
bool same_secret(std::string_view guess, std::string_view key) {
  unsigned char diff = guess.size() == key.size() ? 0 : 1;
  for (size_t i = 0; i < guess.size(); ++i) diff |= (unsigned char)(guess[i] ^ key[i % key.size()]);
  return diff == 0;
}

}  // namespace

bool authorized(const HttpRequest& request, const std::string& api_key) {
  if (api_key.empty()) return true;
  const boost::beast::string_view value = request[boost::beast::http::field::authorization];
  constexpr boost::beast::string_view kScheme = "Bearer ";
  if (value.size() < kScheme.size() || !boost::beast::iequals(value.substr(0, kScheme.size()), kScheme)) return false;
  const boost::beast::string_view key = value.substr(kScheme.size());
  return same_secret(std::string_view(key.data(), key.size()), api_key);
}

}  // namespace tidal
