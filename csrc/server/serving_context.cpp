#include "server/serving_context.h"

#include <algorithm>

#include "server/api_error.h"

namespace tidal {

ServedModel& ServingContext::resolve_model(const std::string& requested) {
  if (requested.empty()) return models.front();
  for (ServedModel& model : models) {
    if (std::find(model.names.begin(), model.names.end(), requested) != model.names.end()) return model;
  }
  throw model_not_found(requested);
}

}  // namespace tidal
