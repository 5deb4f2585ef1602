// Password files in Mosquitto's format, so that files made by
// mosquitto_passwd work as they are: one `username:hash` per line, the hash
// either `$7$ITERATIONS$SALT$HASH` (PBKDF2-HMAC-SHA512, salt and hash in
// base64) or the older `$6$SALT$HASH` (one SHA-512 over password and salt).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace sluice::auth {

// One user's stored hash, decoded.
struct PasswordHash {
  enum class Kind { kPbkdf2Sha512, kSha512 };
  Kind kind = Kind::kPbkdf2Sha512;
  std::uint32_t iterations = 0;
  std::vector<std::uint8_t> salt;
  std::vector<std::uint8_t> hash;
};

// The PBKDF2 iterations of hashes made here. Mosquitto makes 101; more makes
// a stolen file slower to attack, and costs about 1 ms of CPU per CONNECT
// (docs/security.md).
inline constexpr std::uint32_t kDefaultIterations = 1000;

// `$7$...` or `$6$...`; nullopt if it is neither.
std::optional<PasswordHash> parse_hash(std::string_view text);
std::string format_hash(const PasswordHash& hash);

// A new $7$ hash of `password` with a random salt.
PasswordHash make_hash(std::string_view password, std::uint32_t iterations = kDefaultIterations);

// Compares in constant time (for hashes of the same length).
bool verify(const PasswordHash& hash, std::string_view password);

class PasswordFile {
 public:
  // Reads `path`. On failure returns nullopt and says why (file and line) in `error`.
  static std::optional<PasswordFile> load(const std::string& path, std::string& error);

  // Whether `username` exists and `password` is its password.
  bool check(const std::string& username, std::string_view password) const;
  bool contains(const std::string& username) const { return users_.contains(username); }
  std::size_t size() const { return users_.size(); }

 private:
  std::unordered_map<std::string, PasswordHash> users_;
};

// `sluice passwd FILE USER`: sets USER's password in FILE (created if
// missing), keeping every other line as it was. Returns an error message,
// or nullopt on success.
// With `scram`, the line holds SCRAM-SHA-256 keys instead (see scram.hpp).
std::optional<std::string> set_password(const std::string& path, const std::string& username,
                                        std::string_view password, bool scram = false);

}  // namespace sluice::auth
