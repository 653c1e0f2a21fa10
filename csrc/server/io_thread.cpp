#include "server/io_thread.h"

#include <cstdio>
#include <exception>

namespace tidal {

void run_io_thread(boost::asio::io_context& ioc) {
  // run() may be called again after a handler threw, without restart().
  for (;;) {
    try {
      ioc.run();
      return;
    } catch (const std::exception& e) {
      std::fprintf(stderr, "tidal: HTTP handler failed (serving on): %s\n", e.what());
    }
  }
}

}  // namespace tidal
