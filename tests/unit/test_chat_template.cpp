// Chat prompts rendered without Jinja. Expected strings were produced by
// rendering the real templates with Python jinja2.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <vector>

#include "core/error.h"
#include "model/chat_template.h"
#include "model/gguf.h"

namespace tidal {
namespace {

const std::string kSmolLM2 = std::string(TIDAL_SOURCE_DIR) + "/models/SmolLM2-135M-Instruct.Q4_1.gguf";

// tokenizer.chat_template of SmolLM2-135M-Instruct (newlines are real ones).
const std::string kSmolTemplate =
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ "
    "'<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}"
    "{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor "
    "%}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

const std::string kDefaultSystem =
    "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n";

std::vector<std::string> smol_templates() {
  std::vector<std::string> sources = {kSmolTemplate};
  if (std::filesystem::exists(kSmolLM2)) sources.push_back(GgufFile::open(kSmolLM2)->get_string("tokenizer.chat_template"));
  return sources;
}

TEST(ChatTemplate, SmolLM2SingleUser) {
  for (const std::string& source : smol_templates()) {
    const std::vector<ChatMessage> msgs = {{"user", "Hi"}};
    EXPECT_EQ(apply_chat_template(source, msgs, true),
              kDefaultSystem + "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
    EXPECT_EQ(apply_chat_template(source, msgs, false), kDefaultSystem + "<|im_start|>user\nHi<|im_end|>\n");
  }
}

TEST(ChatTemplate, SmolLM2SystemAndUser) {
  for (const std::string& source : smol_templates()) {
    const std::vector<ChatMessage> msgs = {{"system", "Be brief."}, {"user", "Hi"}};
    EXPECT_EQ(apply_chat_template(source, msgs, true),
              "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
  }
}

TEST(ChatTemplate, SmolLM2MultiTurn) {
  for (const std::string& source : smol_templates()) {
    const std::vector<ChatMessage> msgs = {
        {"user", "Hi"}, {"assistant", "Hello! How can I help?"}, {"user", "Tell me a joke."}};
    const std::string turns =
        "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello! How can I help?<|im_end|>\n"
        "<|im_start|>user\nTell me a joke.<|im_end|>\n";
    EXPECT_EQ(apply_chat_template(source, msgs, true), kDefaultSystem + turns + "<|im_start|>assistant\n");
    EXPECT_EQ(apply_chat_template(source, msgs, false), kDefaultSystem + turns);
  }
}

// A ChatML template that builds every turn from the messages has no default system.
TEST(ChatTemplate, ChatMLWithoutDefaultSystem) {
  const std::string source =
      "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + "
      "'<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";
  EXPECT_EQ(apply_chat_template(source, {{"user", "Hi"}}, true),
            "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
}

// Escaped newlines inside the Jinja literal (as Qwen2.5 writes its default).
TEST(ChatTemplate, ChatMLEscapedDefaultSystem) {
  const std::string source =
      "{%- if messages[0]['role'] != 'system' %}{{- '<|im_start|>system\\nYou are Qwen.<|im_end|>\\n' }}{%- endif %}"
      "{{'<|im_start|>' + message['role'] + '\\n'}}";
  EXPECT_EQ(apply_chat_template(source, {{"user", "Hi"}}, false),
            "<|im_start|>system\nYou are Qwen.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n");
}

TEST(ChatTemplate, Llama2) {
  const std::string source =
      "{% if messages[0]['role'] == 'system' %}...{% set content = '<<SYS>>\\n' + system_message + "
      "'\\n<</SYS>>\\n\\n' + message['content'] %}...{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}";
  const std::vector<ChatMessage> msgs = {
      {"system", "Be brief."}, {"user", " Hi "}, {"assistant", "Hello!"}, {"user", "Joke?"}};
  EXPECT_EQ(apply_chat_template(source, msgs, true),
            "<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\n Hi [/INST] Hello! </s><s>[INST] Joke? [/INST]");
  EXPECT_EQ(apply_chat_template(source, {{"user", " Hi "}}, true), "<s>[INST] Hi [/INST]");
  EXPECT_THROW(apply_chat_template(source, {{"assistant", "x"}}, true), Error);
}

TEST(ChatTemplate, PlainFallbackWithoutTemplate) {
  EXPECT_EQ(apply_chat_template("", {{"system", "Be kind."}, {"user", "Tell a story."}}, true),
            "system: Be kind.\nuser: Tell a story.\nassistant:");
  EXPECT_EQ(apply_chat_template("", {{"user", "Hi"}}, false), "user: Hi\n");
}

TEST(ChatTemplate, UnknownTemplateIsRejected) {
  try {
    apply_chat_template("{{ messages }}<start_of_turn>", {{"user", "Hi"}}, true);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kUnsupported);
  }
}

}  // namespace
}  // namespace tidal
