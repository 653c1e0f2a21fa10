// The variants of one loaded model that are in memory, derived once and
// shared while anyone holds them: a configuration that serves a variant
// and shadow monitoring that scores it read the same weights, so a switch
// to a variant being scored, or a layout-only switch, derives nothing and
// holds no second copy. A variant nobody holds any more is freed (the
// memory limit counts a configuration's derived weights as its own).
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
  // (derive_variant) unless someone still holds it. Throws Error for an
  // unknown name. Safe from any thread; two threads asking for one variant
  // derive it once.
  std::shared_ptr<const Model> get(const std::string& variant);
  // Whether `variant` is in memory (held by someone).
  bool holds(const std::string& variant) const;

 private:
  const Model& base_;
  mutable std::mutex mutex_;
  std::map<std::string, std::weak_ptr<const Model>> derived_;
};

}  // namespace tidal
