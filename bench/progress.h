// A progress line on stderr while the benchmark runs: finished requests out
// of the total, failures, elapsed time and output tokens per second. On a
// terminal it redraws in place; otherwise it prints a line every 10%.
#pragma once

#include <chrono>
#include <cstddef>

#include "request_record.h"

namespace tidal::bench {

class Progress {
 public:
  Progress(size_t total, bool enabled);
  void on_done(const RequestRecord& r);
  void finish();

 private:
  void draw(bool force);

  size_t total_;
  bool enabled_;
  bool tty_;
  size_t done_ = 0;
  size_t failed_ = 0;
  long long output_tokens_ = 0;
  size_t last_printed_decile_ = 0;
  std::chrono::steady_clock::time_point start_;
  std::chrono::steady_clock::time_point last_draw_;
};

}  // namespace tidal::bench
