#include "progress.h"

#include <unistd.h>

#include <cstdio>

namespace tidal::bench {

Progress::Progress(size_t total, bool enabled)
    : total_(total), enabled_(enabled), tty_(isatty(STDERR_FILENO) != 0), start_(std::chrono::steady_clock::now()) {}

void Progress::on_done(const RequestRecord& r) {
  ++done_;
  if (!r.success) ++failed_;
  output_tokens_ += r.success ? r.output_tokens() : 0;
  draw(false);
}

void Progress::finish() {
  if (!enabled_ || !tty_) return;  // the line for 100% is already out
  draw(true);
  std::fputc('\n', stderr);
}

void Progress::draw(bool force) {
  if (!enabled_ || total_ == 0) return;
  const auto now = std::chrono::steady_clock::now();
  if (tty_) {
    // Redrawing costs the client CPU the server may need; 10 per second is enough.
    if (!force && done_ != total_ && now - last_draw_ < std::chrono::milliseconds(100)) return;
  } else {
    const size_t decile = done_ * 10 / total_;
    if (!force && decile == last_printed_decile_) return;
    last_printed_decile_ = decile;
  }
  last_draw_ = now;
  const double elapsed = std::chrono::duration<double>(now - start_).count();
  constexpr int width = 30;
  const int filled = static_cast<int>(width * done_ / total_);
  char bar[width + 1];
  for (int i = 0; i < width; ++i) bar[i] = i < filled ? '#' : '.';
  bar[width] = '\0';
  std::fprintf(stderr, "%s[%s] %zu/%zu requests, %zu failed, %.1f s, %.1f output tok/s%s", tty_ ? "\r" : "", bar,
               done_, total_, failed_, elapsed, elapsed > 0 ? output_tokens_ / elapsed : 0.0, tty_ ? "" : "\n");
  std::fflush(stderr);
}

}  // namespace tidal::bench
