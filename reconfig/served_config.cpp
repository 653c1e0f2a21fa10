#include "reconfig/served_config.h"

#include <cmath>
#include <cstdio>
#include <vector>

#include "core/error.h"
#include "model/variant.h"

namespace tidal {

namespace {

[[noreturn]] void reject(const std::string& message) { throw Error(ErrorCode::kInvalidArgument, message); }

// The largest grid a switch may ask for: far beyond any machine tidal runs
// on, small enough that a typo cannot start thousands of threads.
constexpr int kMaxRanks = 256;

}  // namespace

ServedConfig apply_change(ServedConfig c, const ConfigChange& change) {
  if (change.variant) c.variant = *change.variant;
  if (change.tp) c.layout.tp = *change.tp;
  if (change.pp) c.layout.pp = *change.pp;
  if (change.dp) c.layout.dp = *change.dp;
  if (change.max_num_seqs) c.max_num_seqs = *change.max_num_seqs;
  if (change.max_num_batched_tokens) c.max_num_batched_tokens = *change.max_num_batched_tokens;
  if (change.target_tpot_ms) c.target_tpot_ms = *change.target_tpot_ms;
  return c;
}

void check_config_values(const ServedConfig& c) {
  if (c.variant != kBaseVariant && !parse_variant(c.variant)) {
    // parse_variant_list's message lists the accepted names.
    try {
      parse_variant_list(c.variant);
    } catch (const Error& e) {
      reject(std::string("variant: ") + e.what() + ", or 'base' for the weights as loaded");
    }
    reject("variant: unknown variant '" + c.variant + "'");
  }
  for (const auto& [name, value] : std::vector<std::pair<const char*, int>>{
           {"tp", c.layout.tp}, {"pp", c.layout.pp}, {"dp", c.layout.dp}}) {
    if (value < 1 || value > kMaxRanks) reject(std::string(name) + " must be between 1 and " + std::to_string(kMaxRanks));
  }
  if (int64_t(c.layout.tp) * c.layout.pp * c.layout.dp > kMaxRanks) {
    reject("tp * pp * dp must be at most " + std::to_string(kMaxRanks));
  }
  if (c.max_num_seqs < 1 || c.max_num_seqs > 4096) reject("max_num_seqs must be between 1 and 4096");
  if (c.max_num_batched_tokens < 1 || c.max_num_batched_tokens > (1 << 20)) {
    reject("max_num_batched_tokens must be between 1 and 1048576");
  }
  if (!std::isfinite(c.target_tpot_ms) || c.target_tpot_ms < 0 || c.target_tpot_ms > 1e6) {
    reject("target_tpot_ms must be between 0 (off) and 1000000");
  }
}

std::string change_kind(const ServedConfig& a, const ServedConfig& b) {
  std::string kind;
  auto add = [&](const char* k) {
    if (!kind.empty()) kind += '+';
    kind += k;
  };
  if (a.variant != b.variant) add("variant");
  if (a.layout.tp != b.layout.tp || a.layout.pp != b.layout.pp || a.layout.dp != b.layout.dp ||
      a.layout.comm != b.layout.comm) {
    add("layout");
  }
  if (a.max_num_seqs != b.max_num_seqs || a.max_num_batched_tokens != b.max_num_batched_tokens ||
      a.target_tpot_ms != b.target_tpot_ms) {
    add("knobs");
  }
  return kind.empty() ? "none" : kind;
}

nlohmann::json config_json(const ServedConfig& c) {
  return {{"variant", c.variant},
          {"tp", c.layout.tp},
          {"pp", c.layout.pp},
          {"dp", c.layout.dp},
          {"comm", c.layout.comm},
          {"max_num_seqs", c.max_num_seqs},
          {"max_num_batched_tokens", c.max_num_batched_tokens},
          {"target_tpot_ms", c.target_tpot_ms}};
}

std::string describe_config(const ServedConfig& c) {
  char tpot[32];
  std::snprintf(tpot, sizeof tpot, "%g", c.target_tpot_ms);
  return c.variant + " tp" + std::to_string(c.layout.tp) + " pp" + std::to_string(c.layout.pp) + " dp" +
         std::to_string(c.layout.dp) + (c.layout.comm == "local" ? "" : " " + c.layout.comm) + " (max_num_seqs " +
         std::to_string(c.max_num_seqs) + ", max_num_batched_tokens " + std::to_string(c.max_num_batched_tokens) +
         ", target_tpot_ms " + (c.target_tpot_ms > 0 ? std::string(tpot) : "off") + ")";
}

}  // namespace tidal
