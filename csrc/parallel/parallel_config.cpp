#include "parallel/parallel_config.h"

#include "core/error.h"

namespace tidal {

namespace {

[[noreturn]] void reject(const std::string& message) { throw Error(ErrorCode::kInvalidArgument, message); }

// A row-parallel projection is split along its input columns; each rank's
// columns must be whole blocks of the weight's format.
void check_columns(const Weight& w, int tp, const std::string& what, int layer) {
  const int64_t per_rank = w.cols / tp;
  const int block = dtype_block_elems(w.type);
  if (per_rank % block != 0) {
    reject("--tp " + std::to_string(tp) + " would split a " + std::string(dtype_name(w.type)) + " block of layer " +
           std::to_string(layer) + "'s " + what + ": " + std::to_string(w.cols) + "/" + std::to_string(tp) + " = " +
           std::to_string(per_rank) + " columns per rank is not a multiple of " + std::to_string(block) +
           " (load with --f32, or choose another --tp)");
  }
}

}  // namespace

void check_parallel_config(const Model& model, const ParallelConfig& p) {
  const ModelConfig& c = model.config;
  if (p.tp < 1 || p.pp < 1 || p.dp < 1) reject("--tp, --pp and --dp must be at least 1");
  if (p.comm != "local" && p.comm != "mpi" && p.comm != "nccl") reject("--comm must be local, mpi or nccl");
  if (!(p.comm_timeout_s > 0)) reject("--comm-timeout must be positive");
  if (c.n_kv_heads % p.tp != 0) {
    reject("--tp " + std::to_string(p.tp) + " must divide the model's " + std::to_string(c.n_kv_heads) +
           " KV heads (each rank holds whole KV heads and their query heads)");
  }
  if (c.hidden_dim % p.tp != 0) {
    reject("--tp " + std::to_string(p.tp) + " must divide the model's FFN width " + std::to_string(c.hidden_dim));
  }
  // Each rank rotates its own slice of the FFN activation.
  if (c.ffn_hadamard_block > 0 && (c.hidden_dim / p.tp) % c.ffn_hadamard_block != 0) {
    reject("--tp " + std::to_string(p.tp) + " would split the FFN rotation: " + std::to_string(c.hidden_dim) + "/" +
           std::to_string(p.tp) + " FFN units per rank is not a multiple of its Hadamard block of " +
           std::to_string(c.ffn_hadamard_block));
  }
  if (p.tp > 1) {
    for (size_t l = 0; l < model.layers.size(); ++l) {
      check_columns(model.layers[l].wo, p.tp, "attention output projection", int(l));
      check_columns(model.layers[l].w_down, p.tp, "FFN down projection", int(l));
    }
  }
  if (p.pp > c.n_layers) {
    reject("--pp " + std::to_string(p.pp) + " exceeds the model's " + std::to_string(c.n_layers) + " layers");
  }
}

}  // namespace tidal
