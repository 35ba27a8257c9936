#include "polytune/coordinator/access.h"

#include <fstream>
#include <iterator>
#include <set>

#include <yaml-cpp/yaml.h>

#include "absl/strings/str_cat.h"
#include "polytune/common/sha256.h"

namespace polytune::coordinator {

const char* RoleName(Role role) {
  switch (role) {
    case Role::kAdmin:
      return "admin";
    case Role::kUser:
      return "user";
    case Role::kViewer:
      return "viewer";
    case Role::kWorker:
      return "worker";
  }
  return "?";
}

absl::StatusOr<Role> ParseRole(absl::string_view name) {
  for (Role r : {Role::kAdmin, Role::kUser, Role::kViewer, Role::kWorker})
    if (name == RoleName(r)) return r;
  return absl::InvalidArgumentError(absl::StrCat("role '", name, "' is not admin, user, viewer or worker"));
}

const std::map<std::string, std::vector<Role>>& AccessRules() {
  using R = Role;
  static const auto* rules = new std::map<std::string, std::vector<Role>>{
      // People. Ownership (a user sees only its own jobs) is checked by the service.
      {"/polytune.v1.JobService/SubmitJob", {R::kAdmin, R::kUser}},
      {"/polytune.v1.JobService/GetJob", {R::kAdmin, R::kUser, R::kViewer}},
      {"/polytune.v1.JobService/ListJobs", {R::kAdmin, R::kUser, R::kViewer}},
      {"/polytune.v1.JobService/CancelJob", {R::kAdmin, R::kUser}},
      {"/polytune.v1.JobService/UploadArtifact", {R::kAdmin, R::kUser}},
      {"/polytune.v1.JobService/Download", {R::kAdmin, R::kUser, R::kViewer}},
      {"/polytune.v1.JobService/ListWorkers", {R::kAdmin, R::kUser, R::kViewer}},
      {"/polytune.v1.JobService/GetLogs", {R::kAdmin, R::kUser, R::kViewer}},
      {"/polytune.v1.JobService/GetMetrics", {R::kAdmin, R::kUser, R::kViewer}},
      {"/polytune.v1.JobService/DrainWorker", {R::kAdmin}},
      {"/polytune.v1.JobService/UndrainWorker", {R::kAdmin}},
      // Worker daemons. Which worker and which ranks is checked by the service.
      {"/polytune.v1.WorkerService/Register", {R::kAdmin, R::kWorker}},
      {"/polytune.v1.WorkerService/Heartbeat", {R::kAdmin, R::kWorker}},
      {"/polytune.v1.WorkerService/ReportMetrics", {R::kAdmin, R::kWorker}},
      {"/polytune.v1.WorkerService/ReportLogs", {R::kAdmin, R::kWorker}},
      {"/polytune.v1.WorkerService/UploadCheckpoint", {R::kAdmin, R::kWorker}},
      {"/polytune.v1.WorkerService/Download", {R::kAdmin, R::kWorker}},
  };
  return *rules;
}

bool MayCall(Role role, const std::string& method) {
  auto it = AccessRules().find(method);
  if (it == AccessRules().end()) return false;
  for (Role r : it->second)
    if (r == role) return true;
  return false;
}

absl::StatusOr<std::map<std::string, Principal>> ParseAuthFile(const std::string& yaml, const std::string& source) {
  YAML::Node root;
  try {
    root = YAML::Load(yaml);
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(source, ":", e.mark.line + 1, ": not YAML: ", e.msg));
  }
  const YAML::Node list = root["principals"];
  if (!list || !list.IsSequence())
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": needs 'principals:', a list of {name, role, token_sha256}"));
  std::map<std::string, Principal> out;
  std::set<std::string> names;
  for (const auto& entry : list) {
    const std::string where = absl::StrCat(source, ":", entry.Mark().line + 1);
    if (!entry.IsMap()) return absl::InvalidArgumentError(absl::StrCat(where, ": a principal must be a mapping"));
    for (const auto& kv : entry) {
      const std::string key = kv.first.as<std::string>();
      if (key != "name" && key != "role" && key != "token_sha256")
        return absl::InvalidArgumentError(
            absl::StrCat(where, ": '", key, "' is not a principal key (name, role, token_sha256)"));
    }
    for (const char* key : {"name", "role", "token_sha256"})
      if (!entry[key] || !entry[key].IsScalar() || entry[key].Scalar().empty())
        return absl::InvalidArgumentError(absl::StrCat(where, ": '", key, "' is required"));
    Principal p;
    p.name = entry["name"].Scalar();
    auto role = ParseRole(entry["role"].Scalar());
    if (!role.ok()) return absl::InvalidArgumentError(absl::StrCat(where, ": ", role.status().message()));
    p.role = *role;
    const std::string sha = entry["token_sha256"].Scalar();
    if (!IsSha256Hex(sha))
      return absl::InvalidArgumentError(absl::StrCat(
          where, ": 'token_sha256' must be 64 lower-case hex digits (the sha256 of the token, never the token)"));
    if (!names.insert(p.name).second)
      return absl::InvalidArgumentError(absl::StrCat(where, ": principal '", p.name, "' is listed twice"));
    if (out.count(sha)) return absl::InvalidArgumentError(absl::StrCat(where, ": two principals share a token"));
    out[sha] = p;
  }
  return out;
}

absl::StatusOr<std::string> NewToken() {
  std::ifstream in("/dev/urandom", std::ios::binary);
  unsigned char bytes[32];
  if (!in.read(reinterpret_cast<char*>(bytes), sizeof(bytes)))
    return absl::UnavailableError("cannot read /dev/urandom for a token");
  static const char* hex = "0123456789abcdef";
  std::string out;
  for (unsigned char b : bytes) {
    out += hex[b >> 4];
    out += hex[b & 15];
  }
  return out;
}

absl::StatusOr<std::unique_ptr<TokenRegistry>> TokenRegistry::Load(const std::string& path) {
  std::unique_ptr<TokenRegistry> r(new TokenRegistry(path));
  absl::Status st = r->Reload();
  if (!st.ok()) return st;
  return r;
}

absl::Status TokenRegistry::Reload() {
  std::ifstream in(path_);
  if (!in) return absl::NotFoundError(absl::StrCat("--auth-file ", path_, " cannot be read"));
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  auto parsed = ParseAuthFile(text, path_);
  if (!parsed.ok()) return parsed.status();
  absl::MutexLock l(&mu_);
  by_token_sha_ = *std::move(parsed);
  return absl::OkStatus();
}

absl::StatusOr<Principal> TokenRegistry::Authenticate(absl::string_view token) const {
  if (token.empty())
    return absl::UnauthenticatedError(
        "no token: set POLYTUNE_TOKEN or --token-file (an admin makes one with `polytune auth token`)");
  const std::string sha = Sha256Hex(token);
  absl::MutexLock l(&mu_);
  auto it = by_token_sha_.find(sha);
  if (it == by_token_sha_.end())
    return absl::UnauthenticatedError("unknown token: check POLYTUNE_TOKEN or --token-file, or ask an admin");
  return it->second;
}

size_t TokenRegistry::size() const {
  absl::MutexLock l(&mu_);
  return by_token_sha_.size();
}

}  // namespace polytune::coordinator
