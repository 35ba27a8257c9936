// Principals, tokens and the access rule table (no gRPC server: the e2e test calls every RPC
// of a real coordinator).
#include "polytune/coordinator/access.h"

#include <gtest/gtest.h>

#include <google/protobuf/descriptor.h>

#include <filesystem>
#include <fstream>

#include "polytune/common/sha256.h"
#include "polytune/v1/polytune.pb.h"

namespace polytune::coordinator {
namespace {

std::string Entry(const std::string& name, const std::string& role, const std::string& token) {
  return "  - {name: " + name + ", role: " + role + ", token_sha256: " + Sha256Hex(token) + "}\n";
}

TEST(AccessTest, EveryMethodOfBothServicesHasARuleAndAdminsMayCallAll) {
  // A new RPC without a rule is refused to everyone and fails here.
  const auto* pool = google::protobuf::DescriptorPool::generated_pool();
  v1::Job ensure_linked;  // the generated descriptors register with the pool
  (void)ensure_linked;
  size_t methods = 0;
  for (const char* service : {"polytune.v1.JobService", "polytune.v1.WorkerService"}) {
    const auto* s = pool->FindServiceByName(service);
    ASSERT_NE(s, nullptr) << service;
    for (int i = 0; i < s->method_count(); ++i) {
      const std::string full = "/" + std::string(service) + "/" + s->method(i)->name();
      EXPECT_TRUE(AccessRules().count(full)) << full << " has no access rule";
      EXPECT_TRUE(MayCall(Role::kAdmin, full)) << full;
      ++methods;
    }
  }
  EXPECT_EQ(AccessRules().size(), methods) << "a rule for a method that does not exist";
  EXPECT_FALSE(MayCall(Role::kWorker, "/polytune.v1.JobService/SubmitJob"));
  EXPECT_FALSE(MayCall(Role::kUser, "/polytune.v1.WorkerService/UploadCheckpoint"));
  EXPECT_FALSE(MayCall(Role::kViewer, "/polytune.v1.JobService/CancelJob"));
  EXPECT_TRUE(MayCall(Role::kViewer, "/polytune.v1.JobService/GetJob"));
  EXPECT_FALSE(MayCall(Role::kAdmin, "/polytune.v1.JobService/NoSuchMethod"));
}

TEST(AccessTest, AuthFileErrorsNameTheLineAndOnlyHashesAreAccepted) {
  auto ok = ParseAuthFile("principals:\n" + Entry("alice", "user", "t1") + Entry("w", "worker", "t2"), "auth.yaml");
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(ok->size(), 2u);
  EXPECT_EQ(ok->at(Sha256Hex("t1")).name, "alice");
  auto bad_role =
      ParseAuthFile("principals:\n  - {name: a, role: root, token_sha256: " + Sha256Hex("x") + "}\n", "auth.yaml");
  EXPECT_EQ(bad_role.status().message(), "auth.yaml:2: role 'root' is not admin, user, viewer or worker");
  auto plain = ParseAuthFile("principals:\n  - {name: a, role: user, token_sha256: my-secret-token}\n", "auth.yaml");
  EXPECT_NE(plain.status().message().find("auth.yaml:2: 'token_sha256' must be 64 lower-case hex digits"),
            std::string::npos)
      << plain.status();
  auto twice = ParseAuthFile("principals:\n" + Entry("a", "user", "1") + Entry("a", "admin", "2"), "auth.yaml");
  EXPECT_NE(twice.status().message().find("auth.yaml:3: principal 'a' is listed twice"), std::string::npos);
  auto typo = ParseAuthFile("principals:\n  - {name: a, rol: user}\n", "auth.yaml");
  EXPECT_NE(typo.status().message().find("'rol' is not a principal key"), std::string::npos) << typo.status();
  EXPECT_FALSE(ParseAuthFile("users: []\n", "auth.yaml").ok());
}

TEST(AccessTest, TokensAuthenticateAndAReloadKeepsTheOldSetWhenTheNewFileIsBroken) {
  const std::string path = std::filesystem::temp_directory_path() / ("polytune-auth-" + std::to_string(::getpid()));
  std::ofstream(path) << "principals:\n" << Entry("alice", "user", "alice-token");
  auto registry = TokenRegistry::Load(path);
  ASSERT_TRUE(registry.ok()) << registry.status();
  auto who = (*registry)->Authenticate("alice-token");
  ASSERT_TRUE(who.ok());
  EXPECT_EQ(who->name, "alice");
  EXPECT_EQ(who->role, Role::kUser);
  EXPECT_EQ((*registry)->Authenticate("wrong").status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_EQ((*registry)->Authenticate("").status().code(), absl::StatusCode::kUnauthenticated);
  std::ofstream(path) << "principals:\n" << Entry("bob", "admin", "bob-token");
  ASSERT_TRUE((*registry)->Reload().ok());
  EXPECT_FALSE((*registry)->Authenticate("alice-token").ok()) << "revoked by the reload";
  EXPECT_EQ((*registry)->Authenticate("bob-token")->role, Role::kAdmin);
  std::ofstream(path) << "principals: [oops\n";
  EXPECT_FALSE((*registry)->Reload().ok());
  EXPECT_TRUE((*registry)->Authenticate("bob-token").ok()) << "a broken file keeps the principals it had";
  std::filesystem::remove(path);
  auto token = NewToken();
  ASSERT_TRUE(token.ok());
  EXPECT_EQ(token->size(), 64u);
  EXPECT_NE(*token, *NewToken());
}

}  // namespace
}  // namespace polytune::coordinator
