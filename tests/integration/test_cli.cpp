// The `tidal` program as a user runs it: JSON output of `generate`, and a
// one-line error with exit code 2 for every input mistake.
#include <gtest/gtest.h>
#include <unistd.h>
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <vector>

#include "support/test_models.h"

namespace tidal::test {
namespace {

struct RunResult {
  int exit_code;
  std::string out;  // stdout
  std::string err;  // stderr
};

RunResult run_tidal(const std::string& args) {
  // One file per test process: ctest runs these tests concurrently.
  const std::string err_file = testing::TempDir() + "tidal_cli_stderr_" + std::to_string(getpid()) + ".txt";
  const std::string cmd = std::string(TIDAL_BIN_DIR) + "/tidal " + args + " 2>" + err_file;
  FILE* pipe = popen(cmd.c_str(), "r");
  EXPECT_NE(pipe, nullptr);
  std::string out;
  std::array<char, 4096> buf;
  while (size_t n = fread(buf.data(), 1, buf.size(), pipe)) out.append(buf.data(), n);
  const int status = pclose(pipe);
  std::ifstream e(err_file);
  std::stringstream err;
  err << e.rdbuf();
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out, err.str()};
}

std::string stories_args() {
  return "--model " + data_path("stories260K/stories260K.bin") + " --tokenizer " +
         data_path("stories260K/tok512.model");
}

TEST(Cli, GenerateJsonMatchesGoldenForEveryPromptInOrder) {
  const auto golden = read_json(data_path("stories260K/golden.json"));
  std::string args = "generate " + stories_args() + " --max-tokens 64 --temperature 0 --ignore-eos --json";
  for (const auto& c : golden["cases"]) args += " --prompt '" + c["prompt"].get<std::string>() + "'";
  const RunResult r = run_tidal(args);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::istringstream lines(r.out);
  std::string line;
  size_t i = 0;
  while (std::getline(lines, line)) {
    ASSERT_LT(i, golden["cases"].size());
    const auto j = nlohmann::json::parse(line);
    EXPECT_EQ(j["prompt_ids"], golden["cases"][i]["prompt_ids"]);
    EXPECT_EQ(j["token_ids"], golden["cases"][i]["greedy_ids"]);
    // The golden text decodes the generated ids alone, which drops the
    // leading space of the first piece; continuing a prompt keeps it.
    const std::string text = j["text"], want = golden["cases"][i]["greedy_text"];
    EXPECT_TRUE(text == want || text == " " + want) << text;
    ++i;
  }
  EXPECT_EQ(i, golden["cases"].size());
}

void expect_one_line_error(const RunResult& r) {
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_TRUE(r.out.empty());
  ASSERT_FALSE(r.err.empty());
  EXPECT_EQ(r.err.find('\n'), r.err.size() - 1) << r.err;
}

TEST(Cli, UnknownFlagIsAnErrorNotACrash) {
  expect_one_line_error(run_tidal("generate " + stories_args() + " --prompt hi --no-such-flag"));
}

TEST(Cli, MissingModelFile) {
  expect_one_line_error(run_tidal("generate --model /nonexistent/model.gguf --prompt hi"));
}

TEST(Cli, CorruptModelFiles) {
  const std::string dir = testing::TempDir();
  {
    std::ofstream f(dir + "garbage.gguf", std::ios::binary);
    f << "GGUF\x03\x00\x00\x00 this is not a real gguf file";
  }
  expect_one_line_error(run_tidal("generate --model " + dir + "garbage.gguf --prompt hi"));
  {
    // A llama2.c checkpoint cut in half.
    std::ifstream in(data_path("stories260K/stories260K.bin"), std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::ofstream f(dir + "half.bin", std::ios::binary);
    f.write(bytes.data(), std::streamsize(bytes.size() / 2));
  }
  expect_one_line_error(run_tidal("generate --model " + dir + "half.bin --tokenizer " +
                                  data_path("stories260K/tok512.model") + " --prompt hi"));
}

TEST(Cli, UnknownKvCacheDtypeIsAOneLineError) {
  for (const std::string command : {"generate --prompt hi", "bench-offline", "serve"}) {
    const RunResult r = run_tidal(command + " " + stories_args() + " --kv-cache-dtype bogus");
    expect_one_line_error(r);
    EXPECT_NE(r.err.find("--kv-cache-dtype"), std::string::npos) << r.err;
  }
}

// bench-offline prints one row per batch size against ceilings it measured
// itself; with OpenBLAS installed (tools/install_deps.sh) the prefill is also
// held against its sgemm on the same shapes.
TEST(Cli, BenchOfflineReportsEveryBatchAgainstMeasuredCeilings) {
  const RunResult r = run_tidal("bench-offline " + stories_args() +
                                " --batches 1 2 --prompt-len 16 --gen-len 4 --repeats 2 --kv-cache-mb 4");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("read bandwidth"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("best of 2 runs"), std::string::npos) << r.out;
  const bool have_blas = r.out.find("sgemm reference: OpenBLAS") != std::string::npos;
  EXPECT_TRUE(have_blas || r.out.find("sgemm reference: none (OpenBLAS not found") != std::string::npos) << r.out;
  std::istringstream lines(r.out);
  std::string line;
  std::vector<int> batches;
  while (std::getline(lines, line)) {
    std::istringstream row(line);
    int batch;
    double prefill, gflops;
    std::string vs_sgemm;
    if (!(row >> batch >> prefill >> gflops >> vs_sgemm)) continue;
    batches.push_back(batch);
    EXPECT_GT(prefill, 0) << line;
    EXPECT_EQ(vs_sgemm.back() == '%', have_blas) << line;
  }
  EXPECT_EQ(batches, (std::vector<int>{1, 2})) << r.out;
}

// The value of `key=` in generate's --stats line.
long long stat_value(const std::string& stats, const std::string& key) {
  const size_t at = stats.find(" " + key + "=");
  EXPECT_NE(at, std::string::npos) << key << " missing from " << stats;
  return at == std::string::npos ? -1 : std::stoll(stats.substr(at + key.size() + 2));
}

TEST(Cli, F16KvCacheHalvesBytesPerTokenAndDoublesTheTokensInGenerateStats) {
  const std::string args = "generate " + stories_args() + " --prompt 'Once upon a time' --max-tokens 8 --temperature 0 "
                           "--kv-cache-mb 1 --stats";
  const RunResult f32 = run_tidal(args);
  const RunResult f16 = run_tidal(args + " --kv-cache-dtype f16");
  ASSERT_EQ(f32.exit_code, 0) << f32.err;
  ASSERT_EQ(f16.exit_code, 0) << f16.err;
  EXPECT_NE(f32.err.find("kv_dtype=f32"), std::string::npos) << f32.err;
  EXPECT_NE(f16.err.find("kv_dtype=f16"), std::string::npos) << f16.err;
  EXPECT_EQ(stat_value(f16.err, "kv_bytes_per_token") * 2, stat_value(f32.err, "kv_bytes_per_token"));
  EXPECT_EQ(stat_value(f16.err, "kv_blocks"), 2 * stat_value(f32.err, "kv_blocks"));
  EXPECT_EQ(stat_value(f16.err, "kv_tokens"), 2 * stat_value(f32.err, "kv_tokens"));
}

}  // namespace
}  // namespace tidal::test
