#include "server/prompt_encoding.h"

#include "core/error.h"

namespace tidal {

std::vector<int32_t> encode_text_prompt(const Tokenizer& tokenizer, const std::string& text, bool add_special_tokens) {
  return tokenizer.encode(text, add_special_tokens && tokenizer.add_bos_by_default(), /*parse_special=*/true);
}

std::vector<int32_t> encode_chat_prompt(const ServingContext& ctx, const std::vector<ChatMessage>& messages,
                                        bool add_generation_prompt) {
  std::string text;
  try {
    text = apply_chat_template(ctx.chat_template, messages, add_generation_prompt);
  } catch (const Error& e) {
    throw invalid_request(std::string("Cannot apply the chat template: ") + e.what(), "messages", "invalid_value");
  }
  const Tokenizer& tok = ctx.tokenizer;
  bool add_bos = tok.add_bos_by_default();
  if (add_bos && tok.bos_id() >= 0) {
    const std::string bos = tok.id_to_piece(tok.bos_id());
    if (!bos.empty() && text.compare(0, bos.size(), bos) == 0) add_bos = false;
  }
  return tok.encode(text, add_bos, /*parse_special=*/true);
}

}  // namespace tidal
