// Loading the configured files, and the CONNECT decision.
#include "auth/authenticator.hpp"

namespace sluice::auth {

std::optional<Authenticator> Authenticator::load(const config::AuthConfig& config,
                                                 std::string& error) {
  Authenticator auth;
  if (!config.password_file.empty()) {
    auth.passwords_ = PasswordFile::load(config.password_file, error);
    if (!auth.passwords_) return std::nullopt;
    auth.allow_anonymous_ = config.allow_anonymous;
  }
  if (!config.acl_file.empty()) {
    auth.acl_ = AclFile::load(config.acl_file, error);
    if (!auth.acl_) return std::nullopt;
  }
  return auth;
}

Authenticator::Verdict Authenticator::check(
    const std::optional<std::string>& username,
    const std::optional<std::vector<std::uint8_t>>& password) const {
  if (!username) return allow_anonymous_ ? Verdict::kAllowed : Verdict::kNotAuthorized;
  if (!passwords_) return Verdict::kAllowed;  // no passwords to check a name against
  const std::string_view given =
      password ? std::string_view(reinterpret_cast<const char*>(password->data()), password->size())
               : std::string_view();
  return password && passwords_->check(*username, given) ? Verdict::kAllowed
                                                         : Verdict::kBadCredentials;
}

std::unique_ptr<ClientAcl> Authenticator::acl_for(std::string_view client_id,
                                                  std::string_view username) const {
  if (!acl_) return nullptr;
  return std::make_unique<ClientAcl>(acl_->for_client(client_id, username));
}

}  // namespace sluice::auth
