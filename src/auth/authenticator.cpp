// Loading the configured files, and the CONNECT decision.
#include "auth/authenticator.hpp"

#include <fstream>

namespace sluice::auth {

namespace {

// `user:$scram-sha-256$...` lines, as `sluice passwd --scram` writes them.
std::optional<ScramUsers> load_scram_users(const std::string& path, std::string& error) {
  std::ifstream in(path);
  if (!in) {
    error = path + ": cannot be read";
    return std::nullopt;
  }
  ScramUsers users;
  std::string line;
  for (int number = 1; std::getline(in, line); ++number) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty() || line[0] == '#') continue;
    const std::size_t colon = line.find(':');
    const auto credential = colon == std::string::npos
                                ? std::nullopt
                                : parse_scram(std::string_view(line).substr(colon + 1));
    if (colon == 0 || !credential) {
      error = path + ":" + std::to_string(number) +
              ": expected USERNAME:$scram-sha-256$... (as sluice passwd --scram writes)";
      return std::nullopt;
    }
    users.insert_or_assign(line.substr(0, colon), *credential);
  }
  return users;
}

}  // namespace

std::optional<Authenticator> Authenticator::load(const config::AuthConfig& config,
                                                 std::string& error) {
  Authenticator auth;
  if (!config.password_file.empty()) {
    auth.passwords_ = PasswordFile::load(config.password_file, error);
    if (!auth.passwords_) return std::nullopt;
    auth.allow_anonymous_ = config.allow_anonymous;
  }
  if (!config.scram_file.empty()) {
    auth.scram_ = load_scram_users(config.scram_file, error);
    if (!auth.scram_) return std::nullopt;
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
