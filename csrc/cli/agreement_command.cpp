// `tidal agreement`: offline, how many served outputs agree with the base
// model. Each input line is one served request ({"prompt_ids": [...],
// "output_ids": [...]}, e.g. from a server run with "return_token_ids");
// the base reads prompt + output teacher-forced and, at every output
// position, its top-1 is compared with the served token. A request agrees
// when that holds at no fewer than --agree-tokens of its positions (the
// accuracy objective's rule, reconfig/slo.h). Valid for greedy outputs:
// a sampled token need not be any model's top-1.
#include <cstdio>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/model_options.h"
#include "core/error.h"
#include "reconfig/shadow_scorer.h"
#include "reconfig/slo.h"

namespace tidal {

namespace {

struct AgreementOptions {
  ModelOptions model;
  std::string requests;
  std::string out;
  double agree_tokens = 0.9;
};

std::vector<int32_t> ids(const nlohmann::json& line, const char* key, const std::string& where) {
  auto it = line.find(key);
  if (it == line.end() || !it->is_array()) throw Error(ErrorCode::kInvalidArgument, where + ": '" + key + "' must be an array of token ids");
  std::vector<int32_t> v;
  for (const auto& x : *it) {
    if (!x.is_number_integer()) throw Error(ErrorCode::kInvalidArgument, where + ": '" + key + "' must hold integers");
    v.push_back(x.get<int32_t>());
  }
  return v;
}

void run_agreement(const AgreementOptions& o) {
  std::ifstream in(o.requests);
  if (!in) throw Error(ErrorCode::kNotFound, "cannot read " + o.requests);
  std::ofstream out;
  if (!o.out.empty()) {
    out.open(o.out);
    if (!out) throw Error(ErrorCode::kInvalidArgument, "cannot write " + o.out);
  }
  const LoadedModel m = load_for_serving(o.model);
  const int32_t vocab = m.model->config.vocab_size;
  int64_t requests = 0, agreed = 0, skipped = 0, positions = 0, matches = 0;
  std::string text;
  for (int64_t line_no = 1; std::getline(in, text); ++line_no) {
    if (text.find_first_not_of(" \t\r") == std::string::npos) continue;
    const std::string where = o.requests + ":" + std::to_string(line_no);
    const nlohmann::json line = nlohmann::json::parse(text, nullptr, false);
    if (!line.is_object()) throw Error(ErrorCode::kInvalidArgument, where + ": not a JSON object");
    const std::vector<int32_t> prompt = ids(line, "prompt_ids", where), served = ids(line, "output_ids", where);
    for (const std::vector<int32_t>* v : {&prompt, &served}) {
      for (int32_t id : *v) {
        if (id < 0 || id >= vocab) throw Error(ErrorCode::kInvalidArgument, where + ": token id " + std::to_string(id) + " is out of the vocabulary");
      }
    }
    if (prompt.empty() || served.empty()) {
      ++skipped;  // nothing was served: no trial
      continue;
    }
    const ServedAgreement a = served_agreement(*m.model, *m.backend, prompt, served);
    const bool agrees = request_agrees(a.positions, a.matches, o.agree_tokens);
    ++requests;
    agreed += agrees;
    positions += a.positions;
    matches += a.matches;
    if (out) {
      nlohmann::json r = {{"line", line_no}, {"positions", a.positions}, {"matches", a.matches}, {"agrees", agrees}};
      if (line.contains("id")) r["id"] = line["id"];
      out << r.dump() << "\n";
    }
  }
  const nlohmann::json summary = {{"requests", requests},
                                  {"agreed", agreed},
                                  {"agreement", requests > 0 ? double(agreed) / double(requests) : 0.0},
                                  {"token_agreement", positions > 0 ? double(matches) / double(positions) : 0.0},
                                  {"positions", positions},
                                  {"skipped_empty", skipped},
                                  {"agree_tokens", o.agree_tokens}};
  std::cout << summary.dump() << std::endl;
}

}  // namespace

void register_agreement_command(CLI::App& app) {
  auto o = std::make_shared<AgreementOptions>();
  CLI::App* cmd = app.add_subcommand("agreement", "how many served greedy outputs agree with the base model (offline)");
  add_model_options(*cmd, o->model);
  cmd->add_option("--requests", o->requests, "JSONL, one {\"prompt_ids\": [...], \"output_ids\": [...]} per line")
      ->required();
  cmd->add_option("--out", o->out, "also write each request's positions, matches and verdict here (JSONL)");
  cmd->add_option("--agree-tokens", o->agree_tokens, "a request agrees at this fraction of its positions")
      ->check(CLI::Range(0.0, 1.0))
      ->capture_default_str();
  cmd->callback([o] { run_agreement(*o); });
}

}  // namespace tidal
