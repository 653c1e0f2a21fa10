// How one deployment splits the model: tensor parallel (tp ranks share each
// layer), pipeline parallel (pp stages hold contiguous layer ranges) and data
// parallel (dp independent replicas of the tp x pp grid behind one engine),
// and which communicator connects the ranks.
#pragma once

#include <string>

#include "model/model.h"

namespace tidal {

struct ParallelConfig {
  int tp = 1;
  int pp = 1;
  int dp = 1;
  std::string comm = "local";  // local (threads) | mpi | nccl
  // A bounded wait on another rank that lasts longer than this means the
  // rank died or hung (see docs/PARALLELISM.md, "Failures").
  double comm_timeout_s = 60.0;

  int ranks_per_replica() const { return tp * pp; }
  // Nothing to split: the engine runs the model on this process's device.
  bool single_device() const { return tp == 1 && pp == 1 && dp == 1 && comm == "local"; }
};

// Throws Error(kInvalidArgument) with a one-line reason when `model` cannot
// be split this way: tp must divide the KV heads and the FFN width, every
// rank's slice of a row-parallel projection must be whole quantization
// blocks, and there must be at least one layer per stage.
void check_parallel_config(const Model& model, const ParallelConfig& config);

}  // namespace tidal
