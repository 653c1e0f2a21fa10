// Text and chat prompts to token ids, the same way for the generation
// endpoints and /tokenize, so that usage counts and /tokenize agree.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "model/chat_template.h"
#include "server/serving_context.h"

namespace tidal {

// Special-token text in the prompt maps to the special ids (as Hugging Face
// tokenizers, and so vLLM, do). BOS is added when the tokenizer wants one
// and `add_special_tokens` is set.
std::vector<int32_t> encode_text_prompt(const Tokenizer& tokenizer, const std::string& text, bool add_special_tokens);

// Renders the messages with the model's chat template and encodes the result;
// BOS is added unless the template already wrote it. Template errors
// (e.g. roles a Llama-2 template cannot place) are 400s naming 'messages'.
std::vector<int32_t> encode_chat_prompt(const ServingContext& ctx, const std::vector<ChatMessage>& messages,
                                        bool add_generation_prompt);

}  // namespace tidal
