// Hashing with OpenSSL, and reading and rewriting password files.
#include "auth/password_file.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <charconv>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "auth/base64.hpp"
#include "auth/scram.hpp"

namespace sluice::auth {
namespace {

constexpr std::size_t kSaltBytes = 12;  // what mosquitto_passwd uses
constexpr std::size_t kHashBytes = 64;  // SHA-512

std::vector<std::uint8_t> digest(const PasswordHash& like, std::string_view password) {
  std::vector<std::uint8_t> out(kHashBytes);
  if (like.kind == PasswordHash::Kind::kPbkdf2Sha512) {
    PKCS5_PBKDF2_HMAC(password.data(), static_cast<int>(password.size()), like.salt.data(),
                      static_cast<int>(like.salt.size()), static_cast<int>(like.iterations),
                      EVP_sha512(), static_cast<int>(out.size()), out.data());
    return out;
  }
  EVP_MD_CTX* context = EVP_MD_CTX_new();
  unsigned int length = 0;
  EVP_DigestInit_ex(context, EVP_sha512(), nullptr);
  EVP_DigestUpdate(context, password.data(), password.size());
  EVP_DigestUpdate(context, like.salt.data(), like.salt.size());
  EVP_DigestFinal_ex(context, out.data(), &length);
  EVP_MD_CTX_free(context);
  out.resize(length);
  return out;
}

std::vector<std::string_view> split(std::string_view text, char separator) {
  std::vector<std::string_view> parts;
  std::size_t start = 0;
  while (true) {
    const std::size_t end = text.find(separator, start);
    parts.push_back(text.substr(start, end - start));
    if (end == std::string_view::npos) return parts;
    start = end + 1;
  }
}

}  // namespace

std::optional<PasswordHash> parse_hash(std::string_view text) {
  const auto parts = split(text, '$');  // "", "7", iterations, salt, hash
  PasswordHash hash;
  std::string_view salt, value;
  if (parts.size() == 5 && parts[0].empty() && parts[1] == "7") {
    const auto [end, error] =
        std::from_chars(parts[2].data(), parts[2].data() + parts[2].size(), hash.iterations);
    if (error != std::errc() || end != parts[2].data() + parts[2].size() || hash.iterations == 0)
      return std::nullopt;
    salt = parts[3];
    value = parts[4];
  } else if (parts.size() == 4 && parts[0].empty() && parts[1] == "6") {
    hash.kind = PasswordHash::Kind::kSha512;
    salt = parts[2];
    value = parts[3];
  } else {
    return std::nullopt;
  }
  auto decoded_salt = from_base64(salt);
  auto decoded_hash = from_base64(value);
  if (!decoded_salt || !decoded_hash || decoded_hash->size() != kHashBytes) return std::nullopt;
  hash.salt = std::move(*decoded_salt);
  hash.hash = std::move(*decoded_hash);
  return hash;
}

std::string format_hash(const PasswordHash& hash) {
  if (hash.kind == PasswordHash::Kind::kSha512) {
    return "$6$" + to_base64(hash.salt) + "$" + to_base64(hash.hash);
  }
  return "$7$" + std::to_string(hash.iterations) + "$" + to_base64(hash.salt) + "$" +
         to_base64(hash.hash);
}

PasswordHash make_hash(std::string_view password, std::uint32_t iterations) {
  PasswordHash hash;
  hash.iterations = iterations;
  hash.salt.resize(kSaltBytes);
  RAND_bytes(hash.salt.data(), static_cast<int>(hash.salt.size()));
  hash.hash = digest(hash, password);
  return hash;
}

bool verify(const PasswordHash& hash, std::string_view password) {
  const std::vector<std::uint8_t> computed = digest(hash, password);
  return computed.size() == hash.hash.size() &&
         CRYPTO_memcmp(computed.data(), hash.hash.data(), computed.size()) == 0;
}

std::optional<PasswordFile> PasswordFile::load(const std::string& path, std::string& error) {
  std::ifstream in(path);
  if (!in) {
    error = path + ": cannot be read";
    return std::nullopt;
  }
  PasswordFile file;
  std::string line;
  for (int number = 1; std::getline(in, line); ++number) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty() || line[0] == '#') continue;
    const std::size_t colon = line.find(':');
    const auto hash = colon == std::string::npos
                          ? std::nullopt
                          : parse_hash(std::string_view(line).substr(colon + 1));
    if (colon == 0 || !hash) {
      error = path + ":" + std::to_string(number) +
              ": expected USERNAME:$7$ITERATIONS$SALT$HASH (as sluice passwd or mosquitto_passwd "
              "writes)";
      return std::nullopt;
    }
    file.users_.insert_or_assign(line.substr(0, colon), *hash);
  }
  return file;
}

bool PasswordFile::check(const std::string& username, std::string_view password) const {
  const auto it = users_.find(username);
  if (it == users_.end()) {
    // Spend the same time as for a known user, so that timing does not tell
    // which usernames exist.
    static const PasswordHash decoy = make_hash("decoy");
    verify(decoy, password);
    return false;
  }
  return verify(it->second, password);
}

std::optional<std::string> set_password(const std::string& path, const std::string& username,
                                        std::string_view password, bool scram) {
  if (username.empty() || username.find(':') != std::string::npos) {
    return "a username must be non-empty and cannot contain ':'";
  }
  std::vector<std::string> lines;
  if (std::filesystem::exists(path)) {
    std::ifstream in(path);
    if (!in) return path + ": cannot be read";
    std::string line;
    while (std::getline(in, line))
      lines.push_back(line);
  }
  const std::string entry =
      username + ":" +
      (scram ? format_scram(make_scram(password)) : format_hash(make_hash(password)));
  bool replaced = false;
  for (std::string& line : lines) {
    if (line.starts_with(username + ":")) {
      line = entry;
      replaced = true;
    }
  }
  if (!replaced) lines.push_back(entry);
  // Written beside the file and renamed over it, so a crash leaves the old
  // file or the new one, never half of one.
  const std::string temporary = path + ".tmp";
  {
    std::ofstream out(temporary, std::ios::trunc);
    if (!out) return temporary + ": cannot be written";
    for (const std::string& line : lines)
      out << line << '\n';
    if (!out.flush()) return temporary + ": cannot be written";
  }
  std::filesystem::permissions(
      temporary, std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
  std::error_code error;
  std::filesystem::rename(temporary, path, error);
  if (error) return path + ": " + error.message();
  return std::nullopt;
}

}  // namespace sluice::auth
