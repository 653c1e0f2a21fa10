#include "cli/admin_client.h"

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>

#include "core/error.h"

namespace tidal {

namespace {

namespace net = boost::asio;
namespace http = boost::beast::http;
using tcp = net::ip::tcp;

[[noreturn]] void reject_url(std::string_view url) {
  throw Error(ErrorCode::kInvalidArgument, "--url must be http://host[:port][/path] (got '" + std::string(url) + "')");
}

}  // namespace

AdminUrl parse_admin_url(std::string_view url) {
  constexpr std::string_view kScheme = "http://";
  if (url.substr(0, kScheme.size()) != kScheme) reject_url(url);
  const std::string_view rest = url.substr(kScheme.size());
  const std::string_view authority = rest.substr(0, rest.find('/'));
  // The last ':' separates the port unless it is inside an [IPv6] literal.
  const size_t colon = authority.rfind(':');
  const bool has_port = colon != std::string_view::npos && authority.find(']', colon) == std::string_view::npos;
  AdminUrl out{std::string(authority.substr(0, has_port ? colon : authority.size())),
               has_port ? std::string(authority.substr(colon + 1)) : "80"};
  if (out.host.size() >= 2 && out.host.front() == '[' && out.host.back() == ']') {
    out.host = out.host.substr(1, out.host.size() - 2);
  }
  if (out.host.empty() || out.port.empty() || out.port.find_first_not_of("0123456789") != std::string::npos) {
    reject_url(url);
  }
  return out;
}

AdminResponse AdminClient::request(std::string_view method, const std::string& target, const std::string& body) const {
  http::request<http::string_body> req(http::string_to_verb({method.data(), method.size()}), target, 11);
  req.set(http::field::host, url_.authority());
  req.set(http::field::user_agent, "tidal-admin");
  if (!admin_key_.empty()) req.set(http::field::authorization, "Bearer " + admin_key_);
  if (!body.empty()) {
    req.set(http::field::content_type, "application/json");
    req.body() = body;
  }
  req.prepare_payload();
  // No timeout: with ?wait=true the answer comes once the switch is done,
  // which takes as long as preparing the new configuration does.
  try {
    net::io_context io;
    tcp::socket socket(io);
    net::connect(socket, tcp::resolver(io).resolve(url_.host, url_.port));
    http::write(socket, req);
    boost::beast::flat_buffer buffer;
    http::response<http::string_body> res;
    http::read(socket, buffer, res);
    boost::system::error_code ignored;
    socket.shutdown(tcp::socket::shutdown_both, ignored);
    return {int(res.result_int()), std::move(res.body())};
  } catch (const boost::system::system_error& e) {
    throw Error(ErrorCode::kInvalidArgument,
                "cannot talk to tidal serve at http://" + url_.authority() + ": " + e.code().message());
  }
}

}  // namespace tidal
