// `tidal quantize`: derives a variant of a model ahead of time and writes it
// as a GGUF file, which `tidal` then loads like any model (without paying
// for the derivation at every start), and llama.cpp too for f32/f16/bf16.
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "cli/commands.h"
#include "core/error.h"
#include "model/gguf.h"
#include "model/gguf_model_writer.h"
#include "model/loader.h"
#include "model/tokenizer.h"
#include "model/variant.h"

namespace tidal {

namespace {

namespace fs = std::filesystem;

struct QuantizeOptions {
  std::string model;
  std::string tokenizer;
  std::string to;
  std::string out;
};

// The same test load_model uses to pick the GGUF reader.
bool is_gguf(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  char magic[4] = {};
  in.read(magic, sizeof(magic));
  return in.gcount() == 4 && std::memcmp(magic, "GGUF", 4) == 0;
}

void check_tokenizer(const std::string& path, const Model& model) {
  const std::unique_ptr<Tokenizer> tokenizer = load_tokenizer(path);
  if (tokenizer->vocab_size() > model.config.vocab_size) {
    throw Error(ErrorCode::kInvalidArgument, "tokenizer " + path + " has " + std::to_string(tokenizer->vocab_size()) +
                                                 " tokens but the model only " +
                                                 std::to_string(model.config.vocab_size));
  }
}

void run_quantize(const QuantizeOptions& o) {
  std::error_code ec;
  if (fs::equivalent(o.out, o.model, ec)) {
    throw Error(ErrorCode::kInvalidArgument, "--out " + o.out + " is the input model; write the variant to another file");
  }
  const auto start = std::chrono::steady_clock::now();
  const VariantSpec spec = *parse_variant(o.to);  // checked by check_variant_name
  const Model base = load_model(o.model, LoadOptions{.dequantize_to_f32 = false});
  if (!o.tokenizer.empty()) check_tokenizer(o.tokenizer, base);
  const std::unique_ptr<GgufFile> source = is_gguf(o.model) ? GgufFile::open(o.model) : nullptr;

  const std::string base_storage = describe_storage(base);
  const Model variant = derive_variant(base, spec);
  const VariantProvenance provenance{spec.name, fs::path(o.model).filename().string() + " (" + base_storage + ")",
                                     derivation_text(spec, base_storage)};
  write_model_gguf(variant, source.get(), provenance, o.out);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("quantize: %s -> %s (%s from %s): weights %zu -> %zu bytes, file %ju bytes, %.2f s\n", o.model.c_str(),
              o.out.c_str(), spec.name.c_str(), base_storage.c_str(), model_weight_bytes(base),
              model_weight_bytes(variant), static_cast<uintmax_t>(fs::file_size(o.out)), seconds);
}

// --to takes one variant name; the message for anything else comes from
// parse_variant_list, which lists the accepted names.
std::string check_variant_name(const std::string& name) {
  try {
    if (parse_variant_list(name).size() != 1) return "give one variant, not a list";
  } catch (const Error& e) {
    return e.what();
  }
  return {};
}

}  // namespace

void register_quantize_command(CLI::App& app) {
  auto o = std::make_shared<QuantizeOptions>();
  CLI::App* cmd = app.add_subcommand(
      "quantize",
      "write a variant of a model (its weights re-encoded) to a GGUF file that tidal loads with --model; "
      "f32/f16/bf16 files also load in llama.cpp. A GGUF model's tokenizer and chat template are copied; a "
      "llama2.c model's file holds no tokenizer, so keep passing --tokenizer (e.g. tok512.model) when running it");
  cmd->add_option("-m,--model", o->model, "model file (.gguf or llama2.c .bin)")->required()->check(CLI::ExistingFile);
  cmd->add_option("--tokenizer", o->tokenizer,
                  "tokenizer to check against the model (its vocabulary must fit); not written into the file");
  cmd->add_option("--to", o->to, "variant to write")->required()->check(CLI::Validator(check_variant_name, "VARIANT"));
  cmd->add_option("-o,--out", o->out, "GGUF file to write (never the input model)")->required();
  cmd->callback([o] { run_quantize(*o); });
}

}  // namespace tidal
