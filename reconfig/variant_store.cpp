#include "reconfig/variant_store.h"

#include "core/error.h"
#include "model/variant.h"
#include "reconfig/served_config.h"

namespace tidal {

std::shared_ptr<const Model> VariantStore::get(const std::string& variant) {
  if (variant == kBaseVariant) return std::shared_ptr<const Model>(&base_, [](const Model*) {});
  // Held while deriving: a second caller for the same variant waits for it
  // rather than deriving it again (deriving is seconds, switches are rare).
  std::lock_guard<std::mutex> lock(mutex_);
  if (std::shared_ptr<const Model> held = derived_[variant].lock()) return held;
  const std::optional<VariantSpec> spec = parse_variant(variant);
  if (!spec) throw Error(ErrorCode::kInvalidArgument, "unknown variant '" + variant + "'");
  auto model = std::make_shared<const Model>(derive_variant(base_, *spec));
  derived_[variant] = model;
  return model;
}

bool VariantStore::holds(const std::string& variant) const {
  if (variant == kBaseVariant) return true;
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = derived_.find(variant);
  return it != derived_.end() && !it->second.expired();
}

}  // namespace tidal
