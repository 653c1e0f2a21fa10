// GET /health: whether every served model can serve. While every
// data-parallel replica of every model serves, the answer is vLLM's (200,
// empty body), which load balancers and vLLM clients already read. Once a
// replica is down (its executor failed, see engine/engine.h) a JSON body
// says which, and why:
//
//   {"status": "degraded", "models": [{"model": "m", "replicas": 2,
//    "replicas_up": 1, "down": [{"replica": 1, "error": "..."}]}]}
//
// still with 200 while every model keeps a replica (its requests go to the
// others), and "unavailable" with 503 once a model has none left (its
// requests can only fail: the server needs a restart or a switch).
#pragma once

#include <string>
#include <vector>

#include "engine/engine.h"

namespace tidal {

struct ModelHealth {
  std::string model;  // the name it is served under
  EngineStats stats;  // its engine's, per replica
};

struct HealthReport {
  int status = 200;
  std::string body;   // empty while every replica serves
};

HealthReport health_report(const std::vector<ModelHealth>& models);

}  // namespace tidal
