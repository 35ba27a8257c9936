// Helpers shared by the engine tests.
#pragma once

#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

#include <ATen/ATen.h>

namespace polytune::testing {

// A fresh directory under TEST_TMPDIR or /tmp, removed at destruction.
class TempDir {
 public:
  TempDir() {
    const char* base = std::getenv("TEST_TMPDIR");
    std::string templ = std::string(base ? base : "/tmp") + "/polytune-test-XXXXXX";
    path_ = ::mkdtemp(templ.data());
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// max |a - b| / max |b|: the relative error measure the parity tests bound.
inline double RelativeMaxError(const at::Tensor& a, const at::Tensor& b) {
  at::Tensor bd = b.to(at::kDouble);
  double denom = bd.abs().max().item<double>();
  return (a.to(at::kDouble) - bd).abs().max().item<double>() / (denom > 0 ? denom : 1.0);
}

// Runs a shell command, capturing stdout and stderr together.
struct ShellResult {
  int code;  // exit status, or 128 + signal
  std::string output;
};

inline ShellResult Shell(const std::string& cmd) {
  FILE* p = ::popen((cmd + " 2>&1").c_str(), "r");
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), p)) > 0) out.append(buf, n);
  int status = ::pclose(p);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status), out};
}

}  // namespace polytune::testing
