// Incremental Server-Sent Events parser. Bytes arrive in whatever pieces TCP
// delivers them; an event may be split anywhere, even between the CR and LF
// of a line ending, so all state survives between feed() calls.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace tidal::bench {

class SseParser {
 public:
  // Consumes `bytes` and returns the data of every event completed by them
  // (an event ends at a blank line; multi-line data is joined with '\n').
  std::vector<std::string> feed(std::string_view bytes);

  // End of stream: returns a final event some servers send without the
  // closing blank line (including a last line with no line ending).
  std::vector<std::string> finish();

 private:
  void take_line(std::string_view line, std::vector<std::string>& events);

  std::string line_;          // the current, unterminated line
  std::string data_;          // data lines of the current event
  bool has_data_ = false;
  bool after_cr_ = false;     // the previous byte was CR: a following LF is part of that line ending
};

}  // namespace tidal::bench
