#include <nlohmann/json.hpp>

#include "server/handlers.h"
#include "server/json_text.h"
#include "server/openai_schema.h"
#include "server/prompt_encoding.h"

namespace tidal {

// vLLM's /tokenize: {"count", "max_model_len", "tokens"[, "token_strs"]}.
void handle_tokenize(ServingContext& ctx, std::shared_ptr<Exchange> exchange) {
  const TokenizeRequest req = parse_tokenize_request(parse_json_object(exchange->request().body()));
  const ServedModel& model = ctx.resolve_model(req.model);
  const std::vector<int32_t> ids = req.prompt
                                       ? encode_text_prompt(ctx.tokenizer, *req.prompt, req.add_special_tokens)
                                       : encode_chat_prompt(ctx, req.messages, req.add_generation_prompt);
  nlohmann::json body = {{"count", ids.size()}, {"max_model_len", model.max_model_len}, {"tokens", ids}};
  if (req.return_token_strs) {
    nlohmann::json strs = nlohmann::json::array();
    for (int32_t id : ids) strs.push_back(ctx.tokenizer.id_to_piece(id));
    body["token_strs"] = std::move(strs);
  }
  exchange->reply(200, json_text(body));
}

// vLLM's /detokenize: {"tokens": [...]} -> {"prompt": text}.
void handle_detokenize(ServingContext& ctx, std::shared_ptr<Exchange> exchange) {
  const DetokenizeRequest req = parse_detokenize_request(parse_json_object(exchange->request().body()));
  ctx.resolve_model(req.model);  // every model shares the tokenizer; the name must still be one served
  const int vocab = ctx.tokenizer.vocab_size();
  for (size_t i = 0; i < req.tokens.size(); ++i) {
    if (req.tokens[i] >= vocab) {
      throw invalid_request("Token id " + std::to_string(req.tokens[i]) + " is out of vocabulary (size " +
                                std::to_string(vocab) + ").",
                            "tokens[" + std::to_string(i) + "]", "invalid_value");
    }
  }
  exchange->reply(200, json_text({{"prompt", ctx.tokenizer.decode(req.tokens)}}));
}

}  // namespace tidal
