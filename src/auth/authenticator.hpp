// Who may connect, and what each client may do: the password file, the
// SCRAM keys and the ACL file of the configuration, loaded once at start and
// then only read (from every worker thread).
//
// One rule decides who a client is: a username counts (for the ACL and for
// owning a session) only once it was verified, by the password file, by
// SCRAM, or as the identity of a verified client certificate. When any of
// those sources is configured, a client whose credentials cannot be verified
// is refused, unless allow_anonymous lets it in as anonymous (no username
// for the ACL). With no source configured every client is anonymous.
#pragma once

#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "auth/acl_file.hpp"
#include "auth/hash_pool.hpp"
#include "auth/password_file.hpp"
#include "auth/scram.hpp"
#include "config/config.hpp"

namespace sluice::auth {

class Authenticator {
 public:
  // Loads the files `config` names. `certificate_identities`: some listener
  // takes a verified client certificate's name as the username (so
  // certificates are a source of identities). On failure returns nullptr with
  // the reason (file and line) in `error`.
  static std::unique_ptr<Authenticator> load(const config::AuthConfig& config,
                                             bool certificate_identities, std::string& error);
  ~Authenticator();

  // What to do with a CONNECT that brings no verified identity of its own
  // (no client certificate name, no SCRAM exchange).
  enum class Decision {
    kAnonymous,            // let in, with no username for the ACL
    kCheckPassword,        // the password file decides (check_password)
    kRefuseNoCredentials,  // no username, and anonymous clients are not allowed: 0x87 / 5
    kRefuseUnverifiable,   // a username nothing here can verify: 0x86 / 4
  };
  Decision decide(const std::optional<std::string>& username) const;
  // Whether any source of verified names is configured (else every client is
  // anonymous, and a session has no owner to check).
  bool verifies_names() const { return sources_; }

  // Whether `password` is `username`'s in the password file: the slow part
  // (PBKDF2), for a thread that may take a millisecond.
  bool check_password(const std::string& username, std::string_view password) const;
  // The same on the hash pool; `done(verified)` runs on a pool thread, unless
  // `wanted()` says by then that nobody waits for it (the client left). False
  // when too many checks wait already: the client is to be refused as busy.
  bool check_password_async(std::string username, std::string password,
                            std::function<bool()> wanted,
                            std::function<void(bool verified)> done) const;
  // Stops the hash pool: no callback runs after this returns.
  void stop() const;

  // SCRAM-SHA-256 users; nullptr when no scram_file is configured.
  std::shared_ptr<const ScramUsers> scram_users() const { return files()->scram; }

  // The access rules of a client with this verified `username` (nullopt:
  // anonymous); nullptr when no ACL file is configured (then every client
  // may publish and subscribe to anything).
  std::unique_ptr<ClientAcl> acl_for(std::string_view client_id,
                                     const std::optional<std::string>& username) const;
  // Whether the ACL file has rules for named users while nothing can verify
  // a name (they never apply then; the start-up log says so).
  bool has_unreachable_user_rules() const;

  // What the files hold, replaced as a whole by a reload. Readers take a
  // snapshot; a SCRAM exchange keeps its users alive while it runs.
  struct Files {
    std::optional<PasswordFile> passwords;
    std::optional<AclFile> acl;
    std::shared_ptr<const ScramUsers> scram;
  };
  // Hot reload, in two steps so that a reload of several things can check
  // them all before it changes any. prepare reads the files `config` names
  // again: nullptr, with the reason (file and line) in `error`, when one
  // does not read. Only the files' contents may change: `config` must name
  // the same kinds of file, with the same allow_anonymous (same_setup).
  std::shared_ptr<const Files> prepare(const config::AuthConfig& config, std::string& error) const;
  // Puts prepared files in place at once: clients that connect from then on
  // are checked against them; connected clients get new rules from acl_for.
  void commit(std::shared_ptr<const Files> files) {
    std::lock_guard lock(files_mutex_);
    files_ = std::move(files);
  }
  bool same_setup(const config::AuthConfig& config) const;

 private:
  Authenticator() = default;
  static bool read_files(const config::AuthConfig& config, Files& files, std::string& error);

  // What readers take a snapshot of. A mutex, not std::atomic<shared_ptr>:
  // libstdc++ 12 builds that on a lock bit ThreadSanitizer cannot see, and
  // only connects and reloads come here.
  std::shared_ptr<const Files> files() const {
    std::lock_guard lock(files_mutex_);
    return files_;
  }
  mutable std::mutex files_mutex_;
  std::shared_ptr<const Files> files_;
  config::AuthConfig setup_;  // as loaded: which files, and allow_anonymous
  bool sources_ = false;      // any source of verified identities is configured
  bool allow_anonymous_ = true;
  std::unique_ptr<HashPool> pool_;  // made with the password file
};

}  // namespace sluice::auth
