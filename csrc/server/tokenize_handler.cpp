#include <nlohmann/json.hpp>

#include "server/handlers.h"
#include "server/json_text.h"
#include "server/openai_schema.h"
#include "server/prompt_encoding.h"
#include "server/request_work.h"

namespace tidal {

namespace {

// Both run on the request pool and return the reply's body.

std::string tokenize_body(ServingContext& ctx, const HttpRequest& request) {
  const TokenizeRequest req = parse_tokenize_request(parse_json_object(request.body()));
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
  return json_text(body);
}

std::string detokenize_body(ServingContext& ctx, const HttpRequest& request) {
  const DetokenizeRequest req = parse_detokenize_request(parse_json_object(request.body()));
  ctx.resolve_model(req.model);  // every model shares the tokenizer; the name must still be one served
  const int vocab = ctx.tokenizer.vocab_size();
  for (size_t i = 0; i < req.tokens.size(); ++i) {
    if (req.tokens[i] >= vocab) {
      throw invalid_request("Token id " + std::to_string(req.tokens[i]) + " is out of vocabulary (size " +
                                std::to_string(vocab) + ").",
                            "tokens[" + std::to_string(i) + "]", "invalid_value");
    }
  }
  return json_text({{"prompt", ctx.tokenizer.decode(req.tokens)}});
}

Answer reply_200(std::string body) {
  return [body = std::move(body)](std::shared_ptr<Exchange> exchange) mutable { exchange->reply(200, std::move(body)); };
}

}  // namespace

// vLLM's /tokenize: {"count", "max_model_len", "tokens"[, "token_strs"]}.
void handle_tokenize(ServingContext& ctx, std::shared_ptr<Exchange> exchange) {
  prepare_off_strand(ctx, std::move(exchange),
                     [&ctx](const HttpRequest& request) { return reply_200(tokenize_body(ctx, request)); });
}

// vLLM's /detokenize: {"tokens": [...]} -> {"prompt": text}.
void handle_detokenize(ServingContext& ctx, std::shared_ptr<Exchange> exchange) {
  prepare_off_strand(ctx, std::move(exchange),
                     [&ctx](const HttpRequest& request) { return reply_200(detokenize_body(ctx, request)); });
}

}  // namespace tidal
