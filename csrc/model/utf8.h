// UTF-8 helpers shared by the tokenizers and the streaming decoder.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace tidal {

// Bytes in the character that `lead` starts, judged by the lead byte alone
// (a stray continuation byte counts as 1) - how llama.cpp splits text into
// symbols, so the SPM merge sees the same units.
size_t utf8_char_length(uint8_t lead);

// Appends `bytes` to `out` as well-formed UTF-8, replacing each maximal
// ill-formed subpart with U+FFFD (the Unicode-recommended practice, which
// gives the same result whether the input arrives whole or in pieces).
// Unless `at_end`, a trailing sequence that is incomplete but could still
// become valid is left unconsumed. Returns the number of bytes consumed.
size_t append_valid_utf8(std::string_view bytes, bool at_end, std::string& out);

}  // namespace tidal
