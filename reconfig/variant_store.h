// The variants of one loaded model that are in memory, derived once and
// shared: a configuration that serves a variant and shadow monitoring that
// scores it read the same weights, so a switch to a variant that has been
// scored derives nothing (and holds no second copy).
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "model/model.h"

namespace tidal {

class VariantStore {
 public:
  explicit VariantStore(const Model& base) : base_(base) {}

  // "base" is the model as loaded (not owned); any other name is derived
  // on first use (derive_variant) and kept. Throws Error for an unknown
  // name. Safe from any thread; two threads asking for one variant derive
  // it once.
  std::shared_ptr<const Model> get(const std::string& variant);
  // Whether `variant` is in memory already.
  bool holds(const std::string& variant) const;

 private:
  const Model& base_;
  mutable std::mutex mutex_;
  std::map<std::string, std::shared_ptr<const Model>> derived_;
};

}  // namespace tidal
