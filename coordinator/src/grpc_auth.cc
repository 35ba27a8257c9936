#include "polytune/coordinator/grpc_auth.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace polytune::coordinator {

absl::StatusOr<Principal> Authorizer::Check(const grpc::ServerContext* ctx, const std::string& method) const {
  if (!tokens_) return Principal{"", Role::kAdmin};
  std::string token;
  if (ctx) {
    const auto& md = ctx->client_metadata();
    auto it = md.find("authorization");
    if (it != md.end()) {
      const std::string value(it->second.data(), it->second.size());
      if (absl::StartsWith(value, "Bearer ")) token = value.substr(7);
    }
  }
  auto who = tokens_->Authenticate(token);
  if (!who.ok()) return who.status();
  if (!MayCall(who->role, method)) {
    const size_t slash = method.rfind('/');
    return absl::PermissionDeniedError(absl::StrCat(who->name, " (role ", RoleName(who->role), ") may not call ",
                                                    method.substr(slash + 1),
                                                    "; ask an admin for a token whose role may"));
  }
  return who;
}

}  // namespace polytune::coordinator
