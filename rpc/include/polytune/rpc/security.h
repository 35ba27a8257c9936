// Transport security and credentials on both ends of every gRPC channel.
//
// Clients (the CLI, worker daemons) configure themselves once at start-up with
// SetClientSecurity: from then on MakeChannel speaks TLS when a CA is set (presenting a client
// certificate for mTLS when one is given) and ContextWithDeadline carries the bearer token
// (`authorization: Bearer TOKEN`). Servers build their credentials with MakeServerCredentials.
#pragma once

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace polytune::rpc {

struct ClientSecurity {
  std::string ca_pem;    // trust these CAs; empty: plaintext
  std::string cert_pem;  // client certificate (mTLS), with key_pem
  std::string key_pem;
  std::string token;  // bearer token; empty: none
};

// Reads the files named (any may be empty). `token_file` is read only when `token` is empty;
// a token file that does not exist is no error when `token_file_optional` (the CLI's default
// ~/.config/polytune/token). Errors name the file and the flag.
absl::StatusOr<ClientSecurity> LoadClientSecurity(const std::string& ca_file, const std::string& cert_file,
                                                  const std::string& key_file, const std::string& token,
                                                  const std::string& token_file, bool token_file_optional);

// Process-wide; call before making channels.
void SetClientSecurity(ClientSecurity security);
const ClientSecurity& GetClientSecurity();

// TLS server credentials from PEM files (`client_ca_file` non-empty: clients must present a
// certificate it signed), or insecure ones when `cert_file` is empty.
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(const std::string& cert_file,
                                                                               const std::string& key_file,
                                                                               const std::string& client_ca_file);

}  // namespace polytune::rpc
