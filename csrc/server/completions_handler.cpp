#include "server/generation.h"
#include "server/handlers.h"
#include "server/openai_schema.h"
#include "server/prompt_encoding.h"
#include "server/request_work.h"

namespace tidal {

namespace {

// The legacy completions API's default (OpenAI and vLLM alike).
constexpr int64_t kDefaultMaxTokens = 16;

// On the request pool: parses the body and tokenizes its prompts. The
// answer, run on the strand, submits them.
Answer prepare_completions(ServingContext& ctx, const HttpRequest& request) {
  const CompletionRequest req = parse_completion_request(parse_json_object(request.body()));
  ServedModel& model = ctx.resolve_model(req.options.model);

  GenerationPlan plan;
  plan.kind = ApiKind::kCompletion;
  plan.stream = req.options.stream;
  plan.include_usage = req.options.include_usage;
  plan.return_token_ids = req.options.return_token_ids;
  plan.logprobs = req.logprobs >= 0;
  plan.prompt_param = "prompt";
  for (const PromptInput& p : req.prompts) {
    Request r;
    // Token-id prompts are taken as they are, BOS or not (as vLLM does).
    r.prompt = p.is_ids ? p.ids : encode_text_prompt(ctx.tokenizer, p.text, req.add_special_tokens);
    if (r.prompt.empty()) {
      throw invalid_request("The prompt encodes to no tokens (and the model has no BOS token to start from).",
                            "prompt", "invalid_value");
    }
    r.sampling = req.options.sampling;
    r.sampling.max_tokens =
        resolve_max_tokens(model, req.options.max_tokens, kDefaultMaxTokens, r.prompt.size(), plan.prompt_param);
    std::string echo;
    if (req.echo) echo = p.is_ids ? ctx.tokenizer.decode(p.ids) : p.text;
    plan.echo.push_back(std::move(echo));
    plan.requests.push_back(std::move(r));
  }
  return [&ctx, &model, plan = std::move(plan)](std::shared_ptr<Exchange> exchange) mutable {
    run_generation(ctx, model, std::move(exchange), std::move(plan));
  };
}

}  // namespace

void handle_completions(ServingContext& ctx, std::shared_ptr<Exchange> exchange) {
  prepare_off_strand(ctx, std::move(exchange),
                     [&ctx](const HttpRequest& request) { return prepare_completions(ctx, request); });
}

}  // namespace tidal
