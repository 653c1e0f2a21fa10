// What `tidal serve --variants` decides without a server: the names every
// engine is served under, the profile file from `tidal eval --profile-out`
// (and its errors), the GET /v1/variants body, and /metrics with one
// labelled sample per engine.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "core/error.h"
#include "model/loader.h"
#include "model/variant.h"
#include "server/metrics.h"
#include "server/variant_catalog.h"

namespace tidal {
namespace {

namespace fs = std::filesystem;

const std::string kStories = std::string(TIDAL_TEST_DATA) + "/stories260K/stories260K.bin";

// A file of `text` in a fresh directory per test, removed afterwards.
class ProfileFile : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::path(::testing::TempDir()) /
           ("variant_catalog_" + std::string(::testing::UnitTest::GetInstance()->current_test_info()->name()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string write(const std::string& name, const std::string& text) {
    const std::string path = (dir_ / name).string();
    std::ofstream(path) << text;
    return path;
  }

  fs::path dir_;
};

// The code and the one-line message of what `fn` throws.
template <typename Fn>
std::pair<ErrorCode, std::string> error_of(Fn&& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return {e.code(), e.what()};
  }
  ADD_FAILURE() << "no tidal::Error thrown";
  return {ErrorCode::kInternal, ""};
}

const char* kProfile = R"({"model": "stories260K.bin", "variants": {
  "f16": {"derivation": "f16 (round to nearest even) from f32", "bytes": 521472, "perplexity": 5.25,
          "base": "f32", "base_perplexity": 5.2, "top1_agreement": 0.99, "mean_kl": 0.0001,
          "eval_text": "tests/data/eval.txt", "eval_tokens": 512, "decode_tok_s_batch1": 900.5,
          "threads": 2, "measured_at": "2025-01-01T00:00:00Z"},
  "f32": {"perplexity": 5.2}}})";

TEST(VariantNames, VariantIsServedAsBaseNameColonVariant) {
  EXPECT_EQ(variant_served_name("SmolLM2-135M-Instruct", "int8"), "SmolLM2-135M-Instruct:int8");
}

TEST(VariantNames, BaseKeepsEveryNameAndVariantsFollowTheFirst) {
  const auto names = served_model_names({"stories", "tiny"}, parse_variant_list("f16,int4-g128"));
  ASSERT_EQ(names.size(), 3u);
  EXPECT_EQ(names[0], (std::vector<std::string>{"stories", "tiny"}));
  EXPECT_EQ(names[1], std::vector<std::string>{"stories:f16"});
  EXPECT_EQ(names[2], std::vector<std::string>{"stories:int4-g128"});
}

TEST(VariantNames, NoVariantsLeavesTheBaseNamesAsGiven) {
  const std::vector<std::vector<std::string>> want = {{"a", "a"}};
  EXPECT_EQ(served_model_names({"a", "a"}, {}), want);
}

TEST(VariantNames, AVariantListedTwiceIsRejected) {
  const auto [code, message] = error_of([] { served_model_names({"m"}, parse_variant_list("f16,bf16,f16")); });
  EXPECT_EQ(code, ErrorCode::kInvalidArgument);
  EXPECT_EQ(message, "--variants lists 'f16' twice");
}

TEST(VariantNames, ABaseNameEqualToAVariantNameIsRejected) {
  const auto [code, message] = error_of([] { served_model_names({"m", "m:int8"}, parse_variant_list("int8")); });
  EXPECT_EQ(code, ErrorCode::kInvalidArgument);
  EXPECT_NE(message.find("'m:int8'"), std::string::npos) << message;
}

TEST_F(ProfileFile, VariantsObjectIsReturnedAsWritten) {
  const nlohmann::json profiles = read_variant_profiles(write("p.json", kProfile), kStories);
  ASSERT_TRUE(profiles.is_object());
  EXPECT_EQ(profiles.size(), 2u);
  EXPECT_EQ(profiles["f16"]["perplexity"], 5.25);
  EXPECT_EQ(profiles["f16"]["measured_at"], "2025-01-01T00:00:00Z");
}

TEST_F(ProfileFile, MissingFileIsNotFound) {
  const std::string path = (dir_ / "absent.json").string();
  const auto [code, message] = error_of([&] { read_variant_profiles(path, kStories); });
  EXPECT_EQ(code, ErrorCode::kNotFound);
  EXPECT_NE(message.find(path), std::string::npos) << message;
}

TEST_F(ProfileFile, MalformedFilesAreCorruptWithOneLineNamingTheFile) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"not_json", "{\"variants\": "},
      {"empty", ""},
      {"array", "[1, 2]"},
      {"no_variants", R"({"model": "stories260K.bin"})"},
      {"variants_not_object", R"({"model": "stories260K.bin", "variants": [1]})"},
      {"entry_not_object", R"({"model": "stories260K.bin", "variants": {"int8": 3}})"},
      {"model_not_string", R"({"model": 7, "variants": {}})"},
      {"no_model", R"({"variants": {}})"},
  };
  for (const auto& [name, text] : cases) {
    const std::string path = write(name + ".json", text);
    const auto [code, message] = error_of([&] { read_variant_profiles(path, kStories); });
    EXPECT_EQ(code, ErrorCode::kCorrupt) << name;
    EXPECT_NE(message.find(path), std::string::npos) << name << ": " << message;
    EXPECT_EQ(message.find('\n'), std::string::npos) << name << ": " << message;
  }
}

TEST_F(ProfileFile, AnotherModelsProfileIsRejected) {
  const std::string path = write("p.json", R"({"model": "SmolLM2-135M-Instruct.Q4_1.gguf", "variants": {}})");
  const auto [code, message] = error_of([&] { read_variant_profiles(path, kStories); });
  EXPECT_EQ(code, ErrorCode::kInvalidArgument);
  EXPECT_EQ(message, "variant profile " + path + " profiles SmolLM2-135M-Instruct.Q4_1.gguf, not stories260K.bin");
}

TEST_F(ProfileFile, DefaultPathIsNextToTheModelWhenItExists) {
  const std::string model = (dir_ / "m.gguf").string();
  EXPECT_EQ(default_variant_profile_path(model), "");
  write("m.gguf.variants.json", kProfile);
  EXPECT_EQ(default_variant_profile_path(model), model + ".variants.json");
}

TEST(VariantCatalog, ListsBaseAndVariantsWithStorageBytesDerivationAndProfiles) {
  const Model base = load_model(kStories);
  const VariantSpec f16 = *parse_variant("f16");
  const VariantSpec int8 = *parse_variant("int8");
  const Model half = derive_variant(base, f16);
  const Model eight = derive_variant(base, int8);
  const std::vector<CatalogEntry> entries = {base_catalog_entry("stories", base),
                                             variant_catalog_entry("stories", f16, describe_storage(half), model_weight_bytes(half), "f32"),
                                             variant_catalog_entry("stories", int8, describe_storage(eight), model_weight_bytes(eight), "f32")};
  const nlohmann::json catalog = variant_catalog("stories", entries, nlohmann::json::parse(kProfile)["variants"]);

  EXPECT_EQ(catalog["object"], "list");
  const nlohmann::json& data = catalog["data"];
  ASSERT_EQ(data.size(), 3u);
  for (const auto& e : data) EXPECT_EQ(e["base"], "stories");

  EXPECT_EQ(data[0]["id"], "stories");
  EXPECT_EQ(data[0]["storage"], "f32");
  EXPECT_EQ(data[0]["derivation"], "as loaded");
  EXPECT_EQ(data[0]["bytes"], model_weight_bytes(base));
  // The base is an f32 llama2.c model: the profile of the f32 variant is its own.
  EXPECT_EQ(data[0]["profile"]["perplexity"], 5.2);

  EXPECT_EQ(data[1]["id"], "stories:f16");
  EXPECT_EQ(data[1]["storage"], "f16");
  EXPECT_EQ(data[1]["derivation"], derivation_text(f16, "f32"));
  EXPECT_EQ(data[1]["bytes"], model_weight_bytes(half));
  EXPECT_LT(data[1]["bytes"].get<size_t>(), data[0]["bytes"].get<size_t>());
  EXPECT_EQ(data[1]["profile"]["decode_tok_s_batch1"], 900.5);

  EXPECT_EQ(data[2]["id"], "stories:int8");
  EXPECT_EQ(data[2]["storage"], describe_storage(eight));
  EXPECT_TRUE(data[2]["profile"].is_null());
}

TEST(VariantCatalog, WithoutAProfileFileEveryProfileIsNull) {
  const Model base = load_model(kStories);
  const nlohmann::json catalog = variant_catalog("stories", {base_catalog_entry("stories", base)}, nullptr);
  ASSERT_EQ(catalog["data"].size(), 1u);
  EXPECT_TRUE(catalog["data"][0]["profile"].is_null());
}

TEST(EngineMetricsText, EachFamilyHasOneHeaderAndOneSamplePerEngine) {
  ServerMetrics base("stories"), variant("stories:f16");
  variant.generation_tokens += 7;
  variant.count_finished(FinishReason::kLength);
  variant.time_to_first_token.observe(0.003);
  EngineStats base_stats, variant_stats;
  base_stats.num_running = 1;
  variant_stats.num_blocks = 64;
  const std::string text = render_metrics({{base, base_stats}, {variant, variant_stats}});

  auto count = [&](const std::string& needle) {
    size_t n = 0;
    for (size_t at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) ++n;
    return n;
  };
  EXPECT_EQ(count("# TYPE tidal:num_requests_running gauge\n"), 1u);
  EXPECT_EQ(count("# TYPE tidal:time_to_first_token_seconds histogram\n"), 1u);
  EXPECT_EQ(count("# HELP tidal:request_success_total "), 1u);
  EXPECT_EQ(count("tidal:num_requests_running{model_name=\"stories\",engine=\"0\"} 1\n"), 1u);
  EXPECT_EQ(count("tidal:num_requests_running{model_name=\"stories:f16\",engine=\"0\"} 0\n"), 1u);
  EXPECT_EQ(count("tidal:kv_cache_total_blocks{model_name=\"stories:f16\",engine=\"0\"} 64\n"), 1u);
  EXPECT_EQ(count("tidal:generation_tokens_total{model_name=\"stories:f16\"} 7\n"), 1u);
  EXPECT_EQ(count("tidal:request_success_total{model_name=\"stories:f16\",finished_reason=\"length\"} 1\n"), 1u);
  EXPECT_EQ(count("tidal:time_to_first_token_seconds_count{model_name=\"stories:f16\"} 1\n"), 1u);
  EXPECT_EQ(count("tidal:time_to_first_token_seconds_count{model_name=\"stories\"} 0\n"), 1u);
  // A family's samples follow its header, before the next family begins.
  const size_t header = text.find("# TYPE tidal:num_requests_waiting");
  EXPECT_LT(text.find("tidal:num_requests_running{model_name=\"stories:f16\""), header);
}

TEST(EngineMetricsText, EngineStateComesPerReplicaOfEachModel) {
  ServerMetrics base("m"), variant("m:int8");
  EngineStats replicated;
  replicated.replicas.resize(2);
  replicated.replicas[1].num_waiting = 3;
  const std::string text = render_metrics({{base, EngineStats{}}, {variant, replicated}});
  EXPECT_NE(text.find("tidal:num_requests_waiting{model_name=\"m\",engine=\"0\"} 0\n"), std::string::npos);
  EXPECT_NE(text.find("tidal:num_requests_waiting{model_name=\"m:int8\",engine=\"0\"} 0\n"), std::string::npos);
  EXPECT_NE(text.find("tidal:num_requests_waiting{model_name=\"m:int8\",engine=\"1\"} 3\n"), std::string::npos);
  EXPECT_EQ(text.find("engine=\"2\""), std::string::npos);
  // Request-level counters are the model's, not a replica's.
  EXPECT_NE(text.find("tidal:generation_tokens_total{model_name=\"m:int8\"} 0\n"), std::string::npos);
}

}  // namespace
}  // namespace tidal
