#include "server/generation.h"
#include "server/handlers.h"
#include "server/openai_schema.h"
#include "server/prompt_encoding.h"
#include "server/request_work.h"

namespace tidal {

namespace {

// On the request pool: parses the body, renders the chat template and
// tokenizes the result. The answer, run on the strand, submits it.
Answer prepare_chat(ServingContext& ctx, const HttpRequest& request) {
  const ChatRequest req = parse_chat_request(parse_json_object(request.body()));
  ServedModel& model = ctx.resolve_model(req.options.model);

  GenerationPlan plan;
  plan.kind = ApiKind::kChat;
  plan.stream = req.options.stream;
  plan.include_usage = req.options.include_usage;
  plan.return_token_ids = req.options.return_token_ids;
  plan.logprobs = req.logprobs;
  plan.prompt_param = "messages";
  Request r;
  r.prompt = encode_chat_prompt(ctx, req.messages, req.add_generation_prompt);
  r.sampling = req.options.sampling;
  // Without a limit a chat reply may use the rest of the context (OpenAI, vLLM).
  r.sampling.max_tokens = resolve_max_tokens(model, req.options.max_tokens, std::nullopt, r.prompt.size(), "messages");
  plan.echo.emplace_back();
  plan.requests.push_back(std::move(r));
  return [&ctx, &model, plan = std::move(plan)](std::shared_ptr<Exchange> exchange) mutable {
    run_generation(ctx, model, std::move(exchange), std::move(plan));
  };
}

}  // namespace

void handle_chat_completions(ServingContext& ctx, std::shared_ptr<Exchange> exchange) {
  prepare_off_strand(ctx, std::move(exchange), [&ctx](const HttpRequest& request) { return prepare_chat(ctx, request); });
}

}  // namespace tidal
