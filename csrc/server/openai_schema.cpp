#include "server/openai_schema.h"

#include <cmath>
#include <limits>

#include "server/api_error.h"

namespace tidal {

using nlohmann::json;

namespace {

// Deeper bodies are refused before parsing: no OpenAI request nests more
// than a few levels, and depth is what recursive JSON code chokes on.
constexpr int kMaxJsonDepth = 64;
constexpr size_t kMaxPrompts = 256;
constexpr int kMaxN = 128;
// Sequences one request may start (prompts x n): with the per-sequence
// output bound this caps what one admitted request can hold
// (docs/SECURITY.md gives the formula).
constexpr size_t kMaxSequencesPerRequest = 256;
constexpr int kMaxLogprobs = 20;

std::string type_name(const json& v) {
  if (v.is_number()) return "a number";
  if (v.is_string()) return "a string";
  if (v.is_boolean()) return "a boolean";
  if (v.is_array()) return "an array";
  if (v.is_object()) return "an object";
  return "null";
}

ApiError wrong_type(const std::string& param, const char* expected, const json& got) {
  return invalid_request("Invalid type for '" + param + "': expected " + expected + ", but got " + type_name(got) +
                             " instead.",
                         param, "invalid_type");
}

std::string format_number(double v) {
  json j = v;
  if (v == std::floor(v) && std::fabs(v) < 1e15) j = int64_t(v);
  return j.dump();
}

ApiError out_of_range(const std::string& param, double lo, double hi, double got) {
  return invalid_request("Invalid value for '" + param + "': expected a value between " + format_number(lo) +
                             " and " + format_number(hi) + ", but got " + format_number(got) + " instead.",
                         param, "invalid_value");
}

// Typed access to the optional fields of one JSON object. A field that is
// absent or null reads as "not given".
class Fields {
 public:
  Fields(const json& obj, std::string prefix = "") : obj_(obj), prefix_(std::move(prefix)) {}

  const json* get(const char* key) const {
    auto it = obj_.find(key);
    return it == obj_.end() || it->is_null() ? nullptr : &*it;
  }
  std::string name(const char* key) const { return prefix_ + key; }

  std::optional<bool> boolean(const char* key) const {
    const json* v = get(key);
    if (!v) return std::nullopt;
    if (!v->is_boolean()) throw wrong_type(name(key), "a boolean", *v);
    return v->get<bool>();
  }

  std::optional<double> number(const char* key, double lo, double hi) const {
    const json* v = get(key);
    if (!v) return std::nullopt;
    if (!v->is_number()) throw wrong_type(name(key), "a number", *v);
    const double d = v->get<double>();
    if (!(d >= lo && d <= hi)) throw out_of_range(name(key), lo, hi, d);
    return d;
  }

  // Integers may be written as 3.0 (pydantic, which vLLM uses, allows it).
  std::optional<int64_t> integer(const char* key, int64_t lo, int64_t hi) const {
    const json* v = get(key);
    if (!v) return std::nullopt;
    return integer_value(*v, name(key), lo, hi);
  }

  std::optional<std::string> string(const char* key) const {
    const json* v = get(key);
    if (!v) return std::nullopt;
    if (!v->is_string()) throw wrong_type(name(key), "a string", *v);
    return v->get<std::string>();
  }

  // Refuses a field we recognise but cannot honour, unless it holds `neutral`.
  void unsupported(const char* key, bool (*neutral)(const json&)) const {
    const json* v = get(key);
    if (v && !neutral(*v)) {
      throw invalid_request("'" + name(key) + "' is not supported by this server.", name(key), "unsupported_parameter");
    }
  }

  static int64_t integer_value(const json& v, const std::string& param, int64_t lo, int64_t hi) {
    if (v.is_number_integer()) {
      if (v.is_number_unsigned() && v.get<uint64_t>() > uint64_t(std::numeric_limits<int64_t>::max())) {
        throw out_of_range(param, double(lo), double(hi), v.get<double>());
      }
      const int64_t i = v.get<int64_t>();
      if (i < lo || i > hi) throw out_of_range(param, double(lo), double(hi), double(i));
      return i;
    }
    if (v.is_number_float()) {
      const double d = v.get<double>();
      if (d != std::floor(d)) throw wrong_type(param, "an integer", v);
      if (!(d >= double(lo) && d <= double(hi))) throw out_of_range(param, double(lo), double(hi), d);
      return int64_t(d);
    }
    throw wrong_type(param, "an integer", v);
  }

 private:
  const json& obj_;
  std::string prefix_;
};

bool is_empty(const json& v) { return v.empty(); }
bool is_false(const json& v) { return v.is_boolean() && !v.get<bool>(); }

void check_depth(const std::string& body) {
  int depth = 0;
  bool in_string = false, escaped = false;
  for (char c : body) {
    if (in_string) {
      if (escaped) {
        escaped = false;
      } else if (c == '\\') {
        escaped = true;
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > kMaxJsonDepth) throw invalid_request("JSON body is nested too deeply.", "", "invalid_json");
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
}

std::vector<int32_t> token_ids(const json& v, const std::string& param) {
  if (!v.is_array()) throw wrong_type(param, "an array of token ids", v);
  std::vector<int32_t> ids;
  ids.reserve(v.size());
  for (size_t i = 0; i < v.size(); ++i) {
    ids.push_back(int32_t(
        Fields::integer_value(v[i], param + "[" + std::to_string(i) + "]", 0, std::numeric_limits<int32_t>::max())));
  }
  return ids;
}

std::vector<PromptInput> parse_prompts(const Fields& f) {
  const json* p = f.get("prompt");
  if (!p) throw invalid_request("'prompt' is required.", "prompt", "missing_required_parameter");
  std::vector<PromptInput> prompts;
  if (p->is_string()) {
    prompts.push_back({false, p->get<std::string>(), {}});
    return prompts;
  }
  if (!p->is_array()) throw wrong_type("prompt", "a string, an array of strings or an array of token ids", *p);
  if (p->empty()) throw invalid_request("'prompt' must not be empty.", "prompt", "invalid_value");
  const json& first = (*p)[0];
  if (first.is_number()) {
    prompts.push_back({true, "", token_ids(*p, "prompt")});
    return prompts;
  }
  if (p->size() > kMaxPrompts) {
    throw invalid_request("At most " + std::to_string(kMaxPrompts) + " prompts per request.", "prompt",
                          "invalid_value");
  }
  for (size_t i = 0; i < p->size(); ++i) {
    const json& item = (*p)[i];
    const std::string param = "prompt[" + std::to_string(i) + "]";
    if (first.is_string() && item.is_string()) {
      prompts.push_back({false, item.get<std::string>(), {}});
    } else if (first.is_array() && item.is_array()) {
      if (item.empty()) throw invalid_request("'" + param + "' must not be empty.", param, "invalid_value");
      prompts.push_back({true, "", token_ids(item, param)});
    } else {
      throw wrong_type(param, first.is_string() ? "a string" : "an array of token ids", item);
    }
  }
  return prompts;
}

std::vector<std::string> parse_stop(const Fields& f) {
  const json* v = f.get("stop");
  if (!v) return {};
  std::vector<std::string> stop;
  if (v->is_string()) {
    stop.push_back(v->get<std::string>());
  } else if (v->is_array()) {
    // Every choice of every prompt keeps its own matcher over the list, and
    // each token is checked against each string: bounded, so one request
    // cannot buy unbounded memory or time with a cheap body.
    if (v->size() > kMaxStopStrings) {
      throw invalid_request("'stop' may hold at most " + std::to_string(kMaxStopStrings) + " strings.", "stop",
                            "invalid_value");
    }
    for (size_t i = 0; i < v->size(); ++i) {
      if (!(*v)[i].is_string()) throw wrong_type("stop[" + std::to_string(i) + "]", "a string", (*v)[i]);
      stop.push_back((*v)[i].get<std::string>());
    }
  } else {
    throw wrong_type("stop", "a string or an array of strings", *v);
  }
  for (size_t i = 0; i < stop.size(); ++i) {
    if (stop[i].size() > kMaxStopBytes) {
      throw invalid_request("Each 'stop' string may be at most " + std::to_string(kMaxStopBytes) + " bytes long.",
                            "stop[" + std::to_string(i) + "]", "invalid_value");
    }
  }
  return stop;
}

GenerationOptions parse_common(const Fields& f) {
  GenerationOptions o;
  SamplingParams& s = o.sampling;
  if (auto v = f.string("model")) o.model = *v;
  if (auto v = f.number("temperature", 0.0, 2.0)) s.temperature = float(*v);
  if (auto v = f.number("top_p", 0.0, 1.0)) {
    if (*v == 0.0) throw invalid_request("Invalid value for 'top_p': must be greater than 0.", "top_p", "invalid_value");
    s.top_p = float(*v);
  }
  if (auto v = f.integer("top_k", -1, std::numeric_limits<int32_t>::max())) s.top_k = int(*v);
  if (auto v = f.number("min_p", 0.0, 1.0)) s.min_p = float(*v);
  if (auto v = f.number("presence_penalty", -2.0, 2.0)) s.presence_penalty = float(*v);
  if (auto v = f.number("frequency_penalty", -2.0, 2.0)) s.frequency_penalty = float(*v);
  // vLLM's extension; it requires a positive value (0 would divide by zero).
  if (auto v = f.number("repetition_penalty", 0.0, 1e6)) {
    if (*v == 0.0) {
      throw invalid_request("Invalid value for 'repetition_penalty': must be greater than 0.", "repetition_penalty",
                            "invalid_value");
    }
    s.repetition_penalty = float(*v);
  }
  if (auto v = f.integer("seed", std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::max())) {
    s.seed = uint64_t(*v);
  }
  if (auto v = f.integer("n", 1, kMaxN)) s.n = int(*v);
  if (auto v = f.integer("best_of", 1, kMaxN); v && *v != s.n) {
    throw invalid_request("'best_of' other than n is not supported.", "best_of", "unsupported_parameter");
  }
  s.stop = parse_stop(f);
  if (const json* ids = f.get("stop_token_ids")) {
    s.stop_token_ids = token_ids(*ids, "stop_token_ids");
    if (s.stop_token_ids.size() > kMaxStopTokenIds) {
      throw invalid_request("'stop_token_ids' may hold at most " + std::to_string(kMaxStopTokenIds) + " ids.",
                            "stop_token_ids", "invalid_value");
    }
  }
  if (auto v = f.boolean("ignore_eos")) s.ignore_eos = *v;
  if (auto v = f.boolean("stream")) o.stream = *v;
  if (auto v = f.boolean("return_token_ids")) o.return_token_ids = *v;
  if (const json* so = f.get("stream_options")) {
    if (!so->is_object()) throw wrong_type("stream_options", "an object", *so);
    if (!o.stream) {
      throw invalid_request("'stream_options' is only allowed when 'stream' is true.", "stream_options",
                            "invalid_value");
    }
    if (auto v = Fields(*so, "stream_options.").boolean("include_usage")) o.include_usage = *v;
  }
  f.unsupported("logit_bias", is_empty);
  f.unsupported("tools", is_empty);
  f.unsupported("functions", is_empty);
  (void)f.string("user");  // accepted and ignored, as OpenAI's abuse-tracking field; only its type is checked
  return o;
}

std::string message_content(const json& m, const std::string& param, const std::string& role) {
  auto it = m.find("content");
  if (it == m.end() || it->is_null()) {
    // An assistant turn that only called tools has no content.
    if (role == "assistant") return "";
    throw invalid_request("'" + param + ".content' is required.", param + ".content", "missing_required_parameter");
  }
  if (it->is_string()) return it->get<std::string>();
  if (!it->is_array()) throw wrong_type(param + ".content", "a string or an array of content parts", *it);
  std::string text;
  for (size_t i = 0; i < it->size(); ++i) {
    const json& part = (*it)[i];
    const std::string pp = param + ".content[" + std::to_string(i) + "]";
    if (!part.is_object()) throw wrong_type(pp, "an object", part);
    Fields pf(part, pp + ".");
    const std::optional<std::string> type = pf.string("type");
    if (type != "text") {
      throw invalid_request("Only text content parts are supported; '" + pp + ".type' is '" + type.value_or("") + "'.",
                            pp + ".type", "unsupported_content");
    }
    const std::optional<std::string> t = pf.string("text");
    if (!t) throw invalid_request("'" + pp + ".text' is required.", pp + ".text", "missing_required_parameter");
    text += *t;
  }
  return text;
}

std::vector<ChatMessage> parse_messages(const Fields& f) {
  const json* v = f.get("messages");
  if (!v) throw invalid_request("'messages' is required.", "messages", "missing_required_parameter");
  if (!v->is_array()) throw wrong_type("messages", "an array", *v);
  if (v->empty()) throw invalid_request("'messages' must contain at least one message.", "messages", "invalid_value");
  std::vector<ChatMessage> messages;
  for (size_t i = 0; i < v->size(); ++i) {
    const json& m = (*v)[i];
    const std::string param = "messages[" + std::to_string(i) + "]";
    if (!m.is_object()) throw wrong_type(param, "an object", m);
    const std::optional<std::string> role = Fields(m, param + ".").string("role");
    if (!role) throw invalid_request("'" + param + ".role' is required.", param + ".role", "missing_required_parameter");
    if (*role != "system" && *role != "developer" && *role != "user" && *role != "assistant" && *role != "tool") {
      throw invalid_request("Invalid value for '" + param + ".role': '" + *role +
                                "'. Supported roles: system, developer, user, assistant, tool.",
                            param + ".role", "invalid_value");
    }
    // "developer" is OpenAI's newer name for the system role.
    messages.push_back({*role == "developer" ? "system" : *role, message_content(m, param, *role)});
  }
  return messages;
}

}  // namespace

json parse_json_object(const std::string& body) {
  check_depth(body);
  json j;
  try {
    j = json::parse(body);
  } catch (const json::parse_error& e) {
    // Say where, as a hint, without echoing the body back.
    throw invalid_request("The request body is not valid JSON (byte " + std::to_string(e.byte) + ").", "",
                          "invalid_json");
  } catch (const json::exception& e) {
    // E.g. a number too large for a double.
    throw invalid_request(std::string("The request body is not valid JSON: ") + e.what(), "", "invalid_json");
  }
  if (!j.is_object()) throw invalid_request("The request body must be a JSON object.", "", "invalid_json");
  return j;
}

CompletionRequest parse_completion_request(const json& body) {
  const Fields f(body);
  CompletionRequest r;
  r.options = parse_common(f);
  r.prompts = parse_prompts(f);
  if (r.prompts.size() * size_t(r.options.sampling.n) > kMaxSequencesPerRequest) {
    throw invalid_request("At most " + std::to_string(kMaxSequencesPerRequest) +
                              " sequences per request (the number of prompts times 'n').",
                          "n", "invalid_value");
  }
  r.options.max_tokens = f.integer("max_tokens", std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::max());
  if (auto v = f.boolean("echo")) r.echo = *v;
  if (auto v = f.boolean("add_special_tokens")) r.add_special_tokens = *v;
  if (auto v = f.integer("logprobs", 0, kMaxLogprobs)) r.logprobs = int(*v);
  f.unsupported("suffix", is_empty);
  if (r.echo && r.logprobs >= 0) {
    throw invalid_request("'echo' together with 'logprobs' (prompt logprobs) is not supported.", "echo",
                          "unsupported_parameter");
  }
  r.options.sampling.logprobs = r.logprobs;
  return r;
}

ChatRequest parse_chat_request(const json& body) {
  const Fields f(body);
  ChatRequest r;
  r.options = parse_common(f);
  r.messages = parse_messages(f);
  const auto max_tokens = f.integer("max_tokens", std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::max());
  const auto max_completion_tokens =
      f.integer("max_completion_tokens", std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::max());
  r.options.max_tokens = max_completion_tokens ? max_completion_tokens : max_tokens;
  if (auto v = f.boolean("logprobs")) r.logprobs = *v;
  if (auto v = f.integer("top_logprobs", 0, kMaxLogprobs)) {
    if (!r.logprobs) {
      throw invalid_request("'top_logprobs' requires 'logprobs' to be true.", "top_logprobs", "invalid_value");
    }
    r.top_logprobs = int(*v);
  }
  if (auto v = f.boolean("add_generation_prompt")) r.add_generation_prompt = *v;
  f.unsupported("echo", is_false);
  if (const json* rf = f.get("response_format")) {
    if (!rf->is_object() || Fields(*rf, "response_format.").string("type") != "text") {
      throw invalid_request("Only {\"type\": \"text\"} is supported for 'response_format'.", "response_format",
                            "unsupported_parameter");
    }
  }
  r.options.sampling.logprobs = r.logprobs ? r.top_logprobs : -1;
  return r;
}

TokenizeRequest parse_tokenize_request(const json& body) {
  const Fields f(body);
  TokenizeRequest r;
  if (auto v = f.string("model")) r.model = *v;
  r.prompt = f.string("prompt");
  if (!r.prompt) {
    if (!f.get("messages")) {
      throw invalid_request("Either 'prompt' or 'messages' is required.", "prompt", "missing_required_parameter");
    }
    r.messages = parse_messages(f);
  }
  if (auto v = f.boolean("add_generation_prompt")) r.add_generation_prompt = *v;
  if (auto v = f.boolean("add_special_tokens")) r.add_special_tokens = *v;
  if (auto v = f.boolean("return_token_strs")) r.return_token_strs = *v;
  return r;
}

DetokenizeRequest parse_detokenize_request(const json& body) {
  const Fields f(body);
  DetokenizeRequest r;
  if (auto v = f.string("model")) r.model = *v;
  const json* tokens = f.get("tokens");
  if (!tokens) throw invalid_request("'tokens' is required.", "tokens", "missing_required_parameter");
  r.tokens = token_ids(*tokens, "tokens");
  return r;
}

}  // namespace tidal
