// Early-return helpers for absl::Status / absl::StatusOr.
#pragma once

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define POLYTUNE_CONCAT_INNER(a, b) a##b
#define POLYTUNE_CONCAT(a, b) POLYTUNE_CONCAT_INNER(a, b)

#define RETURN_IF_ERROR(expr)                            \
  do {                                                   \
    ::absl::Status _polytune_status = (expr);            \
    if (!_polytune_status.ok()) return _polytune_status; \
  } while (0)

#define ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                          \
  if (!tmp.ok()) return tmp.status();         \
  lhs = std::move(tmp).value()

#define ASSIGN_OR_RETURN(lhs, expr) ASSIGN_OR_RETURN_IMPL(POLYTUNE_CONCAT(_polytune_statusor_, __LINE__), lhs, expr)
