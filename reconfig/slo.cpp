#include "reconfig/slo.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string_view>

#include "core/error.h"

namespace tidal {

namespace {

[[noreturn]] void reject(const std::string& message) { throw Error(ErrorCode::kInvalidArgument, "slo: " + message); }

double fraction(const std::string& key, double v, bool include_one) {
  if (!std::isfinite(v) || v <= 0 || v > 1 || (!include_one && v == 1)) {
    reject(key + " must be in (0, " + (include_one ? "1]" : "1)"));
  }
  return v;
}

// Applies one key=value; `value` is already a number.
void set_item(Slo& slo, const std::string& key, double value) {
  if (key == "accuracy") {
    slo.accuracy = fraction(key, value, false);
  } else if (key == "confidence") {
    slo.confidence = fraction(key, value, false);
  } else if (key == "agree_tokens") {
    slo.agree_tokens = fraction(key, value, true);
  } else {
    // <metric>_p<percentile>_ms
    LatencyObjective o;
    std::string_view k = key;
    if (k.starts_with("ttft_p")) {
      o.metric = LatencyMetric::kTtft;
    } else if (k.starts_with("tpot_p")) {
      o.metric = LatencyMetric::kTpot;
    } else if (k.starts_with("e2e_p")) {
      o.metric = LatencyMetric::kE2e;
    } else {
      reject("unknown objective '" + key +
             "' (ttft_pNN_ms, tpot_pNN_ms, e2e_pNN_ms, accuracy, confidence, agree_tokens)");
    }
    k.remove_prefix(k.find("_p") + 2);
    if (!k.ends_with("_ms")) reject("'" + key + "' must end in _ms");
    const std::string pct(k.substr(0, k.size() - 3));
    char* end = nullptr;
    o.percentile = std::strtod(pct.c_str(), &end);
    if (pct.empty() || *end != '\0' || !(o.percentile > 0 && o.percentile < 100)) {
      reject("'" + key + "': the percentile must be a number in (0, 100)");
    }
    if (!std::isfinite(value) || value <= 0) reject(key + " must be a positive number of milliseconds");
    o.ms = value;
    for (LatencyObjective& existing : slo.latency) {
      if (existing.key() == o.key()) {
        existing = o;
        return;
      }
    }
    slo.latency.push_back(o);
  }
}

std::string number_text(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}

}  // namespace

bool request_agrees(int64_t positions, int64_t matches, double agree_tokens) {
  // As a quotient, not matches >= agree_tokens * positions: the product
  // can round above a whole count that reaches the threshold exactly
  // (0.56 * 25 > 14 in binary), while 14.0 / 25 rounds to the same double
  // as 0.56.
  return positions > 0 && double(matches) / double(positions) >= agree_tokens;
}

const char* latency_metric_name(LatencyMetric m) {
  switch (m) {
    case LatencyMetric::kTtft: return "ttft";
    case LatencyMetric::kTpot: return "tpot";
    case LatencyMetric::kE2e: return "e2e";
  }
  return "?";
}

std::string LatencyObjective::key() const {
  return std::string(latency_metric_name(metric)) + "_p" + number_text(percentile) + "_ms";
}

const LatencyObjective* Slo::find(LatencyMetric metric) const {
  for (const LatencyObjective& o : latency) {
    if (o.metric == metric) return &o;
  }
  return nullptr;
}

Slo parse_slo(const std::string& text) {
  Slo slo;
  size_t start = 0;
  while (start < text.size()) {
    size_t comma = text.find(',', start);
    if (comma == std::string::npos) comma = text.size();
    const std::string item = text.substr(start, comma - start);
    start = comma + 1;
    if (item.empty()) continue;
    const size_t eq = item.find('=');
    if (eq == std::string::npos) reject("'" + item + "' is not key=value");
    const std::string key = item.substr(0, eq), value = item.substr(eq + 1);
    char* end = nullptr;
    const double v = std::strtod(value.c_str(), &end);
    if (value.empty() || *end != '\0') reject("'" + item + "': the value must be a number");
    set_item(slo, key, v);
  }
  return slo;
}

Slo slo_from_json(const nlohmann::json& j) {
  if (!j.is_object()) reject("expected a JSON object");
  Slo slo;
  for (const auto& [key, value] : j.items()) {
    if (key == "accuracy" && value.is_null()) continue;  // slo_json's "no accuracy objective"
    if (!value.is_number()) reject("'" + key + "' must be a number");
    set_item(slo, key, value.get<double>());
  }
  return slo;
}

nlohmann::json slo_json(const Slo& slo) {
  nlohmann::json j = nlohmann::json::object();
  for (const LatencyObjective& o : slo.latency) j[o.key()] = o.ms;
  j["accuracy"] = slo.accuracy ? nlohmann::json(*slo.accuracy) : nlohmann::json(nullptr);
  j["confidence"] = slo.confidence;
  j["agree_tokens"] = slo.agree_tokens;
  return j;
}

std::string describe_slo(const Slo& slo) {
  std::string s;
  for (const LatencyObjective& o : slo.latency) s += o.key() + "=" + number_text(o.ms) + ",";
  if (slo.accuracy) s += "accuracy=" + number_text(*slo.accuracy) + ",";
  s += "confidence=" + number_text(slo.confidence) + ",agree_tokens=" + number_text(slo.agree_tokens);
  return s;
}

}  // namespace tidal
