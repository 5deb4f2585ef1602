// Who may call the admin API: bearer tokens with a role, kept only as their
// SHA-256 (admin.tokens, admin.token_file), and the secrets `sluice token`
// makes. A presented token is hashed and compared with every stored digest
// in constant time, so neither the answer nor its timing says how much of
// it matched, or which entry.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "config/config.hpp"

namespace sluice::admin {

// Each role may do what the one before it may, and more.
enum class Role { kViewer = 0, kOperator = 1, kAdmin = 2 };

std::optional<Role> role_from_name(std::string_view name);
const char* role_name(Role role);

struct Token {
  std::string name;
  std::string sha256_hex;
  Role role = Role::kViewer;
};

class TokenTable {
 public:
  // The configured tokens and those of admin.token_file; nullopt and
  // `error` (naming the file and line) when the file cannot be read.
  static std::optional<TokenTable> load(const config::AdminConfig& config, std::string& error);

  bool empty() const { return tokens_.empty(); }
  std::size_t size() const { return tokens_.size(); }

  // The token the secret belongs to, if any.
  const Token* find(std::string_view secret) const;

 private:
  std::vector<Token> tokens_;
};

// Lowercase hex SHA-256 of `text`.
std::string sha256_hex(std::string_view text);

// A new secret: "sluice_" then 43 characters of base64url (256 random bits).
std::string make_secret();

}  // namespace sluice::admin
