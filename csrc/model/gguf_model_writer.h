// Writing a loaded (or derived) Model back out as a llama-architecture GGUF
// that load_gguf reads, and that llama.cpp reads too when every matrix has a
// ggml type (f32, f16, bf16, q8_0, q4_0, q4_1).
#pragma once

#include <string>

#include "model/gguf.h"
#include "model/model.h"

namespace tidal {

// Where a variant file's weights came from, recorded under the tidal.variant*
// keys (gguf.h).
struct VariantProvenance {
  std::string variant;     // a variant name, e.g. "int8"
  std::string base;        // base file name and storage, e.g. "model.gguf (q4_1)"
  std::string derivation;  // derivation_text
};

// Writes `model` to `path` (through GgufWriter, so a failure leaves no file).
// `source` is the GGUF the base model came from: all its metadata is copied
// (tokenizer, chat template, llama.* hyper-parameters) except the keys that
// describe storage, which are set for what is written. Without a source (a
// llama2.c base) the llama.* keys are written from model.config and the file
// has no tokenizer. Matrices of the integer formats must all share one type
// (tidal.quant.type describes the whole file); throws kInvalidArgument
// otherwise.
void write_model_gguf(const Model& model, const GgufFile* source, const VariantProvenance& provenance,
                      const std::string& path);

}  // namespace tidal
