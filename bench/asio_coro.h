// The Asio/Beast headers the benchmark's coroutines use, in one place.
#pragma once

// Boost 1.74's awaitable.hpp uses std::exchange without including <utility>;
// it must come first or GCC 12 fails to compile it.
#include <utility>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace tidal::bench {
namespace asio = boost::asio;
using asio::awaitable;
using asio::use_awaitable;
}  // namespace tidal::bench
