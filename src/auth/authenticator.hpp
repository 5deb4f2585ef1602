// Who may connect, and what each client may do: the password file and the
// ACL file of the configuration, loaded once at start and then only read
// (from every worker thread).
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "auth/acl_file.hpp"
#include "auth/password_file.hpp"
#include "auth/scram.hpp"
#include "config/config.hpp"

namespace sluice::auth {

class Authenticator {
 public:
  // Loads the files `config` names. On failure returns nullopt with the
  // reason (file and line) in `error`.
  static std::optional<Authenticator> load(const config::AuthConfig& config, std::string& error);

  enum class Verdict { kAllowed, kBadCredentials, kNotAuthorized };
  // The CONNECT's username and password.
  Verdict check(const std::optional<std::string>& username,
                const std::optional<std::vector<std::uint8_t>>& password) const;

  // SCRAM-SHA-256 users; nullptr when no scram_file is configured.
  const ScramUsers* scram_users() const { return scram_ ? &*scram_ : nullptr; }

  // The client's access rules; nullptr when no ACL file is configured (then
  // every client may publish and subscribe to anything).
  std::unique_ptr<ClientAcl> acl_for(std::string_view client_id, std::string_view username) const;

 private:
  std::optional<PasswordFile> passwords_;
  std::optional<AclFile> acl_;
  std::optional<ScramUsers> scram_;
  bool allow_anonymous_ = true;
};

}  // namespace sluice::auth
