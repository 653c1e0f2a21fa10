#include "engine/sampling_params.h"

#include <algorithm>

namespace tidal {

StopList::StopList(std::vector<std::string> strings) {
  std::erase(strings, std::string());
  if (!strings.empty()) strings_ = std::make_shared<const std::vector<std::string>>(std::move(strings));
}

}  // namespace tidal
