// The body of each of tidal serve's HTTP threads.
#pragma once

#include <boost/asio/io_context.hpp>

namespace tidal {

// Runs `ioc` until it has nothing left to do or is stopped. An exception a
// handler throws is logged and the thread runs on: with one HTTP thread (the
// default) a thread lost would leave the server up but serving nothing. The
// request whose work threw is answered by its Exchange (http_server.h).
void run_io_thread(boost::asio::io_context& ioc);

}  // namespace tidal
