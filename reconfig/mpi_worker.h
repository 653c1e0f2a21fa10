// What a worker process of an MPI job does all its life: builds its part of
// every deployment the driver orders (the first, and each a live switch
// prepares), runs its ranks on a thread per deployment until the driver
// stops them -- which frees that deployment's shards, KV cache and derived
// weights on this process -- and returns when the driver quits.
#pragma once

#include "model/model.h"
#include "parallel/mpi_world.h"

namespace tidal {

// `base`: the model this process loaded (variants are derived from it);
// `threads`: per rank, as --threads.
void serve_mpi_worker(MpiWorld& world, const Model& base, int threads);

}  // namespace tidal
