#include "polytune/rpc/security.h"

#include <grpcpp/security/server_credentials.h>

#include <filesystem>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "polytune/common/file_util.h"

namespace polytune::rpc {
namespace {

ClientSecurity& Security() {
  static auto* s = new ClientSecurity();
  return *s;
}

absl::StatusOr<std::string> ReadPem(const std::string& path, const char* flag) {
  if (path.empty()) return std::string();
  auto text = ReadFileToString(path);
  if (!text.ok()) return absl::NotFoundError(absl::StrCat(flag, " ", path, " cannot be read"));
  if (text->find("-----BEGIN ") == std::string::npos)
    return absl::InvalidArgumentError(absl::StrCat(flag, " ", path, " is not a PEM file"));
  return *text;
}

}  // namespace

absl::StatusOr<ClientSecurity> LoadClientSecurity(const std::string& ca_file, const std::string& cert_file,
                                                  const std::string& key_file, const std::string& token,
                                                  const std::string& token_file, bool token_file_optional) {
  ClientSecurity s;
  auto ca = ReadPem(ca_file, "--tls-ca");
  if (!ca.ok()) return ca.status();
  s.ca_pem = *ca;
  if (cert_file.empty() != key_file.empty())
    return absl::InvalidArgumentError("--tls-cert and --tls-key go together (a client certificate and its key)");
  if (!cert_file.empty() && ca_file.empty())
    return absl::InvalidArgumentError("--tls-cert needs --tls-ca (the CA that signed the coordinator's certificate)");
  auto cert = ReadPem(cert_file, "--tls-cert");
  if (!cert.ok()) return cert.status();
  auto key = ReadPem(key_file, "--tls-key");
  if (!key.ok()) return key.status();
  s.cert_pem = *cert;
  s.key_pem = *key;
  s.token = token;
  if (s.token.empty() && !token_file.empty()) {
    std::error_code ec;
    if (!std::filesystem::exists(token_file, ec)) {
      if (!token_file_optional)
        return absl::NotFoundError(absl::StrCat("--token-file ", token_file, " does not exist"));
    } else {
      auto text = ReadFileToString(token_file);
      if (!text.ok()) return absl::NotFoundError(absl::StrCat("--token-file ", token_file, " cannot be read"));
      s.token = std::string(absl::StripAsciiWhitespace(*text));
    }
  }
  return s;
}

void SetClientSecurity(ClientSecurity security) { Security() = std::move(security); }
const ClientSecurity& GetClientSecurity() { return Security(); }

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(const std::string& cert_file,
                                                                               const std::string& key_file,
                                                                               const std::string& client_ca_file) {
  if (cert_file.empty()) {
    if (!key_file.empty() || !client_ca_file.empty())
      return absl::InvalidArgumentError("--tls-key and --tls-client-ca need --tls-cert");
    return grpc::InsecureServerCredentials();
  }
  if (key_file.empty()) return absl::InvalidArgumentError("--tls-cert needs --tls-key");
  auto cert = ReadPem(cert_file, "--tls-cert");
  if (!cert.ok()) return cert.status();
  auto key = ReadPem(key_file, "--tls-key");
  if (!key.ok()) return key.status();
  auto ca = ReadPem(client_ca_file, "--tls-client-ca");
  if (!ca.ok()) return ca.status();
  grpc::SslServerCredentialsOptions options(ca->empty() ? GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE
                                                        : GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  options.pem_root_certs = *ca;
  options.pem_key_cert_pairs.push_back({*key, *cert});
  return grpc::SslServerCredentials(options);
}

}  // namespace polytune::rpc
