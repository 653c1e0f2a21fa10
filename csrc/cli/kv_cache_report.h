// The one line the commands print about the KV pool an engine allocated:
// element type, bytes per token next to what F32 would take (the memory
// --kv-cache-dtype f16 saves), and how many blocks and tokens it holds.
#pragma once

#include <string>

#include "engine/engine.h"

namespace tidal {

// e.g. "KV cache: f16, 23040 bytes/token (f32: 46080), 2912 blocks x 16 = 46592 tokens"
std::string kv_cache_report(const EngineStats& stats);

}  // namespace tidal
