// Equality of two JSON values that also holds their types and key order to account: nlohmann's
// == takes 1u for 1 and an object's keys in any order. For the tests that compare a reader
// against nlohmann's.
#pragma once

#include "nlohmann/json.hpp"

namespace polytune::testing {

inline bool SameJson(const nlohmann::ordered_json& a, const nlohmann::ordered_json& b) {
  if (a.type() != b.type()) return false;
  if (a.is_object()) {
    if (a.size() != b.size()) return false;
    auto ib = b.items().begin();
    for (auto ia = a.items().begin(); ia != a.items().end(); ++ia, ++ib)
      if (ia.key() != ib.key() || !SameJson(ia.value(), ib.value())) return false;
    return true;
  }
  if (a.is_array()) {
    if (a.size() != b.size()) return false;
    for (size_t i = 0; i < a.size(); ++i)
      if (!SameJson(a[i], b[i])) return false;
    return true;
  }
  return a == b;
}

}  // namespace polytune::testing
