// Helpers of the control-plane end-to-end tests: real processes on loopback.
#pragma once

#include <sys/types.h>
#include <unistd.h>

#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <string>
#include <vector>

#include "../engine/test_util.h"

namespace polytune::testing {

// The build tree the e2e suites run from: `polytune` is build/cli/polytune (POLYTUNE_BIN, set for
// every e2e target), the daemons are found under the build folder two levels up.
inline const std::string kBin = POLYTUNE_BIN;
inline const std::string kBuild = std::filesystem::path(POLYTUNE_BIN).parent_path().parent_path().string();

// Starts `argv` in its own process group with stderr to `log` (stdout is inherited).
inline pid_t Spawn(const std::vector<std::string>& argv, const std::string& log) {
  pid_t pid = ::fork();
  if (pid == 0) {
    ::setpgid(0, 0);
    FILE* f = std::freopen(log.c_str(), "a", stderr);
    (void)f;
    std::vector<char*> c;
    for (const auto& s : argv) c.push_back(::strdup(s.c_str()));
    c.push_back(nullptr);
    ::execv(c[0], c.data());
    ::_exit(127);
  }
  return pid;
}

// A loopback port that was free a moment ago.
inline int FreePort() {
  ShellResult r =
      Shell("python3 -c 'import socket;s=socket.socket();s.bind((\"127.0.0.1\",0));print(s.getsockname()[1])'");
  return std::stoi(r.output);
}

// The flags of a coordinator serving TLS with tokens, from the files a test put in `dir`:
// auth.yaml and certs/ (scripts/make-dev-certs.sh).
inline std::vector<std::string> SecuredCoordinatorFlags(const std::string& dir) {
  return {"--auth-file", dir + "/auth.yaml",       "--tls-cert", dir + "/certs/server.pem",
          "--tls-key",   dir + "/certs/server.key"};
}

// One raw unary call of `method` (a full name) with `request` bytes and, when non-empty,
// `token` as the bearer; the reply's bytes go to `response` when given.
inline grpc::Status RawCall(const std::shared_ptr<grpc::Channel>& ch, const std::string& method,
                            const std::string& token, const std::string& request = "",
                            std::string* response = nullptr) {
  grpc::GenericStub stub(ch);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  if (!token.empty()) ctx.AddMetadata("authorization", "Bearer " + token);
  grpc::Slice slice(request);
  grpc::ByteBuffer req(&slice, 1), resp;
  grpc::Status status;
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  stub.UnaryCall(&ctx, method, grpc::StubOptions(), &req, &resp, [&](grpc::Status s) {
    std::lock_guard<std::mutex> l(mu);
    status = s;
    done = true;
    cv.notify_one();
  });
  std::unique_lock<std::mutex> l(mu);
  cv.wait(l, [&] { return done; });
  if (response && status.ok()) {
    std::vector<grpc::Slice> slices;
    if (resp.Dump(&slices).ok())
      for (const auto& s : slices) response->append(reinterpret_cast<const char*>(s.begin()), s.size());
  }
  return status;
}

}  // namespace polytune::testing
