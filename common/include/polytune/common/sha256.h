// SHA-256 (OpenSSL) as lowercase hex, for content-addressed artifacts and upload checks.
#pragma once

#include <memory>
#include <string>

#include "absl/strings/string_view.h"

namespace polytune {

class Sha256 {
 public:
  Sha256();
  ~Sha256();
  void Update(absl::string_view data);
  std::string HexDigest();  // finishes the hash

 private:
  struct State;
  std::unique_ptr<State> state_;
};

std::string Sha256Hex(absl::string_view data);
bool IsSha256Hex(absl::string_view s);

}  // namespace polytune
