#include "model/chat_template.h"

#include <optional>

#include "core/error.h"

namespace tidal {

namespace {

// The text between "<|im_start|>system\n" and "<|im_end|>" when the template
// writes it as a plain string literal; nothing when the system turn is built
// from an expression (quotes, braces) such as messages[0]['content'].
std::optional<std::string> chatml_default_system(const std::string& source) {
  const std::string opener = "<|im_start|>system";
  for (size_t at = source.find(opener); at != std::string::npos; at = source.find(opener, at + 1)) {
    size_t start = at + opener.size();
    if (source.compare(start, 1, "\n") == 0) {
      start += 1;
    } else if (source.compare(start, 2, "\\n") == 0) {  // an escape inside a Jinja string literal
      start += 2;
    } else {
      continue;
    }
    const size_t end = source.find("<|im_end|>", start);
    if (end == std::string::npos) continue;
    const std::string literal = source.substr(start, end - start);
    if (literal.empty() || literal.find_first_of("'\"{}") != std::string::npos) continue;
    std::string text;
    for (size_t i = 0; i < literal.size(); ++i) {
      if (literal[i] == '\\' && i + 1 < literal.size() && literal[i + 1] == 'n') {
        text.push_back('\n');
        ++i;
      } else {
        text.push_back(literal[i]);
      }
    }
    return text;
  }
  return std::nullopt;
}

std::string render_chatml(const std::string& source, const std::vector<ChatMessage>& msgs, bool add_generation_prompt) {
  std::string out;
  if (!msgs.empty() && msgs[0].role != "system") {
    if (auto system = chatml_default_system(source)) out += "<|im_start|>system\n" + *system + "<|im_end|>\n";
  }
  for (const ChatMessage& m : msgs) out += "<|im_start|>" + m.role + "\n" + m.content + "<|im_end|>\n";
  if (add_generation_prompt) out += "<|im_start|>assistant\n";
  return out;
}

std::string strip(const std::string& s) {
  const char* space = " \t\n\r\f\v";
  const size_t first = s.find_first_not_of(space);
  if (first == std::string::npos) return {};
  return s.substr(first, s.find_last_not_of(space) - first + 1);
}

// Meta's Llama-2 chat template. It ends every user turn with [/INST], so
// there is no separate generation prompt.
std::string render_llama2(const std::vector<ChatMessage>& msgs) {
  size_t first = 0;
  std::string system;
  if (!msgs.empty() && msgs[0].role == "system") {
    system = msgs[0].content;
    first = 1;
  }
  std::string out;
  for (size_t i = first; i < msgs.size(); ++i) {
    const ChatMessage& m = msgs[i];
    const bool user_turn = (i - first) % 2 == 0;
    if (m.role != (user_turn ? "user" : "assistant")) {
      throw Error(ErrorCode::kInvalidArgument, "Llama-2 chat needs roles alternating user/assistant, got '" + m.role + "'");
    }
    std::string content = m.content;
    if (i == first && first == 1) content = "<<SYS>>\n" + system + "\n<</SYS>>\n\n" + content;
    // Appended piece by piece: GCC 12 warns (a false -Wrestrict) on
    // " " + std::string.
    if (user_turn) {
      out.append("<s>[INST] ").append(strip(content)).append(" [/INST]");
    } else {
      out.append(" ").append(strip(content)).append(" </s>");
    }
  }
  return out;
}

std::string render_plain(const std::vector<ChatMessage>& msgs, bool add_generation_prompt) {
  std::string out;
  for (const ChatMessage& m : msgs) out += m.role + ": " + m.content + "\n";
  if (add_generation_prompt) out += "assistant:";
  return out;
}

}  // namespace

std::string apply_chat_template(const std::string& template_source, const std::vector<ChatMessage>& msgs,
                                bool add_generation_prompt) {
  if (template_source.empty()) return render_plain(msgs, add_generation_prompt);
  if (template_source.find("<|im_start|>") != std::string::npos) {
    return render_chatml(template_source, msgs, add_generation_prompt);
  }
  if (template_source.find("[INST]") != std::string::npos && template_source.find("<<SYS>>") != std::string::npos) {
    return render_llama2(msgs);
  }
  throw Error(ErrorCode::kUnsupported, "unrecognised chat template (built in: ChatML, Llama-2 [INST])");
}

}  // namespace tidal
