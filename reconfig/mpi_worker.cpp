#include "reconfig/mpi_worker.h"

#include <atomic>
#include <cstdio>
#include <list>
#include <memory>
#include <thread>

#include "core/error.h"
#include "model/variant.h"
#include "parallel/deployment.h"
#include "reconfig/served_config.h"

namespace tidal {

namespace {

// One deployment's part on this process, and the thread serving its ranks.
struct Generation {
  std::unique_ptr<Model> derived;  // null when it runs the base
  std::unique_ptr<Deployment> deployment;
  std::thread thread;
  std::atomic<bool> done{false};
};

// The weights an order names, derived here from the base.
std::unique_ptr<Model> derive_for(const Model& base, const std::string& variant) {
  if (variant == kBaseVariant) return nullptr;
  const std::optional<VariantSpec> spec = parse_variant(variant);
  if (!spec) throw Error(ErrorCode::kInvalidArgument, "unknown variant '" + variant + "'");
  return std::make_unique<Model>(derive_variant(base, *spec));
}

}  // namespace

void serve_mpi_worker(MpiWorld& world, const Model& base, int threads) {
  std::list<std::unique_ptr<Generation>> live;
  auto reap = [&live] {
    for (auto it = live.begin(); it != live.end();) {
      if (!(*it)->done) {
        ++it;
        continue;
      }
      (*it)->thread.join();
      it = live.erase(it);
    }
  };
  world.serve_orders([&](const DeployOrder& order) {
    reap();
    auto g = std::make_unique<Generation>();
    std::string error;
    const Model* model = &base;
    try {
      g->derived = derive_for(base, order.variant);
      if (g->derived) model = g->derived.get();
      check_parallel_config(*model, order.layout);
    } catch (const std::exception& e) {
      error = e.what();
    }
    try {
      world.ready(error);
    } catch (const Error& e) {
      std::fprintf(stderr, "tidal: MPI rank %d: deployment given up: %s\n", world.rank(), e.what());
      return;
    }
    g->deployment = std::make_unique<Deployment>(*model, order.layout, threads, &world);
    if (g->deployment->idle()) return;  // no rank of it here
    Generation* gen = g.get();
    gen->thread = std::thread([gen] {
      gen->deployment->serve();
      // The driver stopped these ranks: their memory goes now, not at the
      // next order.
      gen->deployment.reset();
      gen->derived.reset();
      gen->done = true;
    });
    live.push_back(std::move(g));
  });
  for (auto& g : live) g->thread.join();
}

}  // namespace tidal
