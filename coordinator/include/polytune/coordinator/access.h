// Who may call what: principals authenticated by bearer token (--auth-file) and the access
// rule of every RPC. No gRPC here; the services apply it at their edge (grpc_auth.h).
//
// Roles: admin (everything), user (submit; see, watch, download and cancel its own jobs),
// viewer (read everything, change nothing), worker (WorkerService only, and only for the
// ranks assigned to the workers it registered).
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"

namespace polytune::coordinator {

enum class Role { kAdmin, kUser, kViewer, kWorker };
const char* RoleName(Role role);
absl::StatusOr<Role> ParseRole(absl::string_view name);

struct Principal {
  std::string name;
  Role role = Role::kAdmin;
};

// The roles allowed to call each RPC, by full method name ("/polytune.v1.JobService/SubmitJob").
// A method missing here is refused to everyone; a test checks that every method of both
// services has a rule.
const std::map<std::string, std::vector<Role>>& AccessRules();
bool MayCall(Role role, const std::string& method);

// The principals of an --auth-file: YAML
//   principals:
//     - {name: alice, role: user, token_sha256: <64 hex>}
// Only token hashes are stored. Errors name the file, the entry and the key.
absl::StatusOr<std::map<std::string, Principal>> ParseAuthFile(const std::string& yaml, const std::string& source);

// A fresh bearer token: 32 random bytes from the kernel, hex.
absl::StatusOr<std::string> NewToken();

// The --auth-file, loaded once and reloaded on request (SIGHUP); lookups are thread-safe.
class TokenRegistry {
 public:
  static absl::StatusOr<std::unique_ptr<TokenRegistry>> Load(const std::string& path);
  // Keeps the principals it has when the file is unreadable or invalid (and says why).
  absl::Status Reload();
  // UNAUTHENTICATED for an empty or unknown token.
  absl::StatusOr<Principal> Authenticate(absl::string_view token) const;
  size_t size() const;

 private:
  explicit TokenRegistry(std::string path) : path_(std::move(path)) {}
  std::string path_;
  mutable absl::Mutex mu_;
  std::map<std::string, Principal> by_token_sha_ ABSL_GUARDED_BY(mu_);
};

}  // namespace polytune::coordinator
