// Chat prompts. We do not embed a Jinja engine: the model's template source
// (GGUF tokenizer.chat_template) is only inspected to recognise its family,
// and that family's format is rendered by hand:
//   - ChatML (source contains "<|im_start|>"): "<|im_start|>{role}\n{content}<|im_end|>\n"
//     per message. A default system message written literally in the
//     template (SmolLM2, Qwen2.5) is inserted when the first message is not
//     a system message.
//   - Llama-2 (source contains "[INST]" and "<<SYS>>"): "<s>[INST] ... [/INST]"
//     turns, the system message folded into the first user turn.
//   - No template (e.g. stories260K): "{role}: {content}\n" per message and
//     "assistant:" as the generation prompt.
// Any other template is rejected (kUnsupported) rather than guessed at.
// The result contains special-token text: encode it with parse_special, and
// without add_bos for Llama-2 (its "<s>" is in the text).
#pragma once

#include <string>
#include <vector>

namespace tidal {

struct ChatMessage {
  std::string role;  // "system", "user", "assistant"
  std::string content;
};

std::string apply_chat_template(const std::string& template_source, const std::vector<ChatMessage>& msgs,
                                bool add_generation_prompt);

}  // namespace tidal
