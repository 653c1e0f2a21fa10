// Loading models from disk. The format is chosen by content (GGUF magic) or
// extension (.bin = llama2.c checkpoint).
#pragma once

#include <string>

#include "model/model.h"

namespace tidal {

struct LoadOptions {
  // When set, every matrix is converted to F32 at load time (the reference
  // precision); otherwise tensors keep the file's type.
  bool dequantize_to_f32 = false;
};

// Throws tidal::Error with a one-line message on missing or corrupt files.
Model load_model(const std::string& path, const LoadOptions& options = {});
Model load_llama2c(const std::string& path, const LoadOptions& options = {});
Model load_gguf(const std::string& path, const LoadOptions& options = {});

// Shared by the format readers. validate_config throws kCorrupt
// ("<path>: ...") unless the hyper-parameters describe a consistent model;
// convert_weights_to_f32 replaces every non-F32 matrix with an F32 copy held
// in a new entry of model.storage (what LoadOptions::dequantize_to_f32 does).
void validate_config(const ModelConfig& config, const std::string& path);
void convert_weights_to_f32(Model& model);

// Copies to 64-byte-aligned buffers the F32/F16/BF16 matrices whose file
// offset is not (a llama2.c checkpoint's floats start 28 bytes in; GGUF
// aligns tensors to 32 bytes by default): their kernels read whole 64-byte
// vectors along each row and run at about half speed when every one of them
// straddles two cache lines. The block formats are read in small pieces
// and stay mapped.
void align_float_weights(Model& model);

}  // namespace tidal
