#include "admin/tokens.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <array>
#include <fstream>
#include <set>
#include <sstream>
#include <stdexcept>

#include "auth/base64.hpp"

namespace sluice::admin {

std::optional<Role> role_from_name(std::string_view name) {
  if (name == "viewer") return Role::kViewer;
  if (name == "operator") return Role::kOperator;
  if (name == "admin") return Role::kAdmin;
  return std::nullopt;
}

const char* role_name(Role role) {
  switch (role) {
    case Role::kViewer:
      return "viewer";
    case Role::kOperator:
      return "operator";
    case Role::kAdmin:
      return "admin";
  }
  return "viewer";
}

std::string sha256_hex(std::string_view text) {
  std::array<unsigned char, EVP_MAX_MD_SIZE> digest{};
  unsigned int size = 0;
  EVP_Digest(text.data(), text.size(), digest.data(), &size, EVP_sha256(), nullptr);
  return auth::to_hex({digest.data(), size});
}

std::string make_secret() {
  std::array<unsigned char, 32> random{};
  if (RAND_bytes(random.data(), static_cast<int>(random.size())) != 1) {
    throw std::runtime_error("the system's random source failed");
  }
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  // base64url without padding: 6 bits a character.
  std::string out = "sluice_";
  unsigned bits = 0;
  int count = 0;
  for (const unsigned char byte : random) {
    bits = (bits << 8) | byte;
    count += 8;
    while (count >= 6) {
      count -= 6;
      out.push_back(kAlphabet[(bits >> count) & 0x3F]);
    }
  }
  if (count > 0) out.push_back(kAlphabet[(bits << (6 - count)) & 0x3F]);
  return out;
}

std::optional<TokenTable> TokenTable::load(const config::AdminConfig& config, std::string& error) {
  TokenTable table;
  std::set<std::string> names;
  for (const config::AdminTokenConfig& token : config.tokens) {
    table.tokens_.push_back({token.name, token.token_sha256, *role_from_name(token.role)});
    names.insert(token.name);
  }
  if (config.token_file.empty()) return table;
  std::ifstream in(config.token_file);
  if (!in) {
    error = config.token_file + ": cannot open the admin token file";
    return std::nullopt;
  }
  std::string line;
  for (int number = 1; std::getline(in, line); ++number) {
    const auto where = config.token_file + ":" + std::to_string(number) + ": ";
    std::istringstream fields(line);
    std::string name, role, digest, extra;
    if (!(fields >> name) || name.starts_with('#')) continue;  // blank or a comment
    fields >> role >> digest;
    const std::optional<Role> parsed = role_from_name(role);
    if (!parsed || digest.size() != 64 || (fields >> extra)) {
      error = where +
              "expected: NAME ROLE SHA256 (ROLE viewer, operator or admin; the line "
              "`sluice token NAME ROLE` prints)";
      return std::nullopt;
    }
    if (digest.find_first_not_of("0123456789abcdef") != std::string::npos) {
      error = where + "the SHA-256 must be 64 lowercase hex digits";
      return std::nullopt;
    }
    if (!names.insert(name).second) {
      error = where + "token '" + name + "' is named twice";
      return std::nullopt;
    }
    table.tokens_.push_back({name, digest, *parsed});
  }
  return table;
}

const Token* TokenTable::find(std::string_view secret) const {
  const std::string presented = sha256_hex(secret);
  const Token* found = nullptr;
  // Every entry is compared, whatever matched: the time taken is the same.
  for (const Token& token : tokens_) {
    const bool same = CRYPTO_memcmp(presented.data(), token.sha256_hex.data(), 64) == 0;
    if (same) found = &token;
  }
  return found;
}

}  // namespace sluice::admin
