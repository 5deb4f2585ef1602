// Loading the configured files, and the CONNECT decision.
#include "auth/authenticator.hpp"

#include <fstream>

namespace sluice::auth {

namespace {

// Threads that check passwords. One keeps up with about a thousand CONNECTs
// a second, and leaves the other cores to the workers.
constexpr unsigned kHashThreads = 1;

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

bool Authenticator::read_files(const config::AuthConfig& config, Files& files, std::string& error) {
  if (!config.password_file.empty()) {
    files.passwords = PasswordFile::load(config.password_file, error);
    if (!files.passwords) return false;
  }
  if (!config.scram_file.empty()) {
    auto users = load_scram_users(config.scram_file, error);
    if (!users) return false;
    files.scram = std::make_shared<const ScramUsers>(std::move(*users));
  }
  if (!config.acl_file.empty()) {
    files.acl = AclFile::load(config.acl_file, error);
    if (!files.acl) return false;
  }
  return true;
}

std::unique_ptr<Authenticator> Authenticator::load(const config::AuthConfig& config,
                                                   bool certificate_identities,
                                                   std::string& error) {
  std::unique_ptr<Authenticator> auth(new Authenticator());
  auto files = std::make_shared<Files>();
  if (!read_files(config, *files, error)) return nullptr;
  if (files->passwords) auth->pool_ = std::make_unique<HashPool>(kHashThreads);
  auth->sources_ = files->passwords || files->scram || certificate_identities;
  auth->allow_anonymous_ = !auth->sources_ || config.allow_anonymous;
  auth->setup_ = config;
  auth->commit(std::move(files));
  return auth;
}

bool Authenticator::same_setup(const config::AuthConfig& config) const {
  return config.password_file.empty() == setup_.password_file.empty() &&
         config.scram_file.empty() == setup_.scram_file.empty() &&
         config.acl_file.empty() == setup_.acl_file.empty() &&
         config.allow_anonymous == setup_.allow_anonymous &&
         config.development_mode == setup_.development_mode;
}

std::shared_ptr<const Authenticator::Files> Authenticator::prepare(const config::AuthConfig& config,
                                                                   std::string& error) const {
  auto files = std::make_shared<Files>();
  if (!read_files(config, *files, error)) return nullptr;
  return files;
}

Authenticator::~Authenticator() {
  stop();
}

Authenticator::Decision Authenticator::decide(const std::optional<std::string>& username) const {
  if (!sources_) return Decision::kAnonymous;  // nothing verifies a name: nobody has one
  if (username && files()->passwords) return Decision::kCheckPassword;
  if (allow_anonymous_) return Decision::kAnonymous;
  return username ? Decision::kRefuseUnverifiable : Decision::kRefuseNoCredentials;
}

bool Authenticator::check_password(const std::string& username, std::string_view password) const {
  const std::shared_ptr<const Files> loaded = files();
  return loaded->passwords && loaded->passwords->check(username, password);
}

bool Authenticator::check_password_async(std::string username, std::string password,
                                         std::function<bool()> wanted,
                                         std::function<void(bool verified)> done) const {
  return pool_->submit([this, username = std::move(username), password = std::move(password),
                        wanted = std::move(wanted), done = std::move(done)] {
    if (wanted()) done(check_password(username, password));
  });
}

void Authenticator::stop() const {
  if (pool_) pool_->stop();
}

std::unique_ptr<ClientAcl> Authenticator::acl_for(
    std::string_view client_id, const std::optional<std::string>& username) const {
  const std::shared_ptr<const Files> loaded = files();
  if (!loaded->acl) return nullptr;
  return std::make_unique<ClientAcl>(loaded->acl->for_client(client_id, username.value_or("")));
}

bool Authenticator::has_unreachable_user_rules() const {
  const std::shared_ptr<const Files> loaded = files();
  return loaded->acl && loaded->acl->has_user_rules() && !sources_;
}

}  // namespace sluice::auth
