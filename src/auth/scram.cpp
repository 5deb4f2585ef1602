// SCRAM-SHA-256 messages and proofs, with OpenSSL's HMAC, SHA-256 and PBKDF2.
#include "auth/scram.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include <charconv>

#include "auth/base64.hpp"

namespace sluice::auth {
namespace {

using Key = std::array<std::uint8_t, 32>;

Key hmac(const Key& key, std::string_view message) {
  Key out{};
  unsigned int length = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const unsigned char*>(message.data()), message.size(), out.data(), &length);
  return out;
}

Key sha256(const Key& input) {
  Key out{};
  SHA256(input.data(), input.size(), out.data());
  return out;
}

// "a=1,b=2" -> the value of `name`, or nullopt.
std::optional<std::string_view> attribute(std::string_view message, char name) {
  while (!message.empty()) {
    const std::size_t comma = message.find(',');
    const std::string_view item = message.substr(0, comma);
    if (item.size() >= 2 && item[0] == name && item[1] == '=') return item.substr(2);
    if (comma == std::string_view::npos) break;
    message.remove_prefix(comma + 1);
  }
  return std::nullopt;
}

// SCRAM escapes ',' and '=' in usernames as "=2C" and "=3D".
std::optional<std::string> decode_name(std::string_view text) {
  std::string out;
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '=') {
      out += text[i];
      continue;
    }
    const std::string_view code = text.substr(i + 1, 2);
    if (code == "2C") {
      out += ',';
    } else if (code == "3D") {
      out += '=';
    } else {
      return std::nullopt;
    }
    i += 2;
  }
  return out;
}

bool fill(Key& key, std::string_view text) {
  const auto bytes = from_base64(text);
  if (!bytes || bytes->size() != key.size()) return false;
  std::copy(bytes->begin(), bytes->end(), key.begin());
  return true;
}

}  // namespace

std::optional<ScramCredential> parse_scram(std::string_view text) {
  constexpr std::string_view kPrefix = "$scram-sha-256$";
  if (!text.starts_with(kPrefix)) return std::nullopt;
  text.remove_prefix(kPrefix.size());
  std::vector<std::string_view> parts;
  for (std::size_t start = 0;;) {
    const std::size_t end = text.find('$', start);
    parts.push_back(text.substr(start, end - start));
    if (end == std::string_view::npos) break;
    start = end + 1;
  }
  if (parts.size() != 4) return std::nullopt;
  ScramCredential credential;
  const auto [end, error] =
      std::from_chars(parts[0].data(), parts[0].data() + parts[0].size(), credential.iterations);
  if (error != std::errc() || end != parts[0].data() + parts[0].size() ||
      credential.iterations == 0) {
    return std::nullopt;
  }
  auto salt = from_base64(parts[1]);
  if (!salt || !fill(credential.stored_key, parts[2]) || !fill(credential.server_key, parts[3])) {
    return std::nullopt;
  }
  credential.salt = std::move(*salt);
  return credential;
}

std::string format_scram(const ScramCredential& c) {
  return "$scram-sha-256$" + std::to_string(c.iterations) + "$" + to_base64(c.salt) + "$" +
         to_base64(c.stored_key) + "$" + to_base64(c.server_key);
}

ScramCredential make_scram(std::string_view password, std::uint32_t iterations) {
  ScramCredential c;
  c.iterations = iterations;
  c.salt.resize(16);
  RAND_bytes(c.salt.data(), static_cast<int>(c.salt.size()));
  Key salted{};
  PKCS5_PBKDF2_HMAC(password.data(), static_cast<int>(password.size()), c.salt.data(),
                    static_cast<int>(c.salt.size()), static_cast<int>(iterations), EVP_sha256(),
                    static_cast<int>(salted.size()), salted.data());
  c.stored_key = sha256(hmac(salted, "Client Key"));
  c.server_key = hmac(salted, "Server Key");
  return c;
}

std::optional<std::string> ScramExchange::start(std::string_view client_first) {
  // Only "n,," (no channel binding, no authorization identity) is offered.
  if (!client_first.starts_with("n,,")) return std::nullopt;
  client_first_bare_ = std::string(client_first.substr(3));
  const auto name = attribute(client_first_bare_, 'n');
  const auto client_nonce = attribute(client_first_bare_, 'r');
  if (!name || !client_nonce || client_nonce->empty()) return std::nullopt;
  const auto username = decode_name(*name);
  if (!username || username->empty()) return std::nullopt;
  username_ = *username;
  const auto it = users_->find(username_);
  known_user_ = it != users_->end();
  // An unknown user gets a made-up salt and fails at the proof, like a wrong
  // password: the exchange does not tell which usernames exist.
  credential_ = known_user_ ? it->second : make_scram("", 4096);
  std::uint8_t random[18];
  RAND_bytes(random, sizeof random);
  nonce_ =
      std::string(*client_nonce) + to_base64(std::span<const std::uint8_t>(random, sizeof random));
  server_first_ = "r=" + nonce_ + ",s=" + to_base64(credential_.salt) +
                  ",i=" + std::to_string(credential_.iterations);
  return server_first_;
}

std::optional<std::string> ScramExchange::finish(std::string_view client_final) {
  const auto channel = attribute(client_final, 'c');
  const auto nonce = attribute(client_final, 'r');
  const auto proof_text = attribute(client_final, 'p');
  const std::size_t proof_at = client_final.rfind(",p=");
  if (!channel || *channel != "biws" || !nonce || *nonce != nonce_ || !proof_text ||
      proof_at == std::string_view::npos) {
    return std::nullopt;
  }
  Key proof{};
  if (!fill(proof, *proof_text)) return std::nullopt;
  const std::string auth_message = client_first_bare_ + "," + server_first_ + "," +
                                   std::string(client_final.substr(0, proof_at));
  const Key signature = hmac(credential_.stored_key, auth_message);
  Key client_key{};
  for (std::size_t i = 0; i < client_key.size(); ++i)
    client_key[i] = proof[i] ^ signature[i];
  const Key computed = sha256(client_key);
  const bool match =
      CRYPTO_memcmp(computed.data(), credential_.stored_key.data(), computed.size()) == 0;
  if (!match || !known_user_) return std::nullopt;
  const Key server_signature = hmac(credential_.server_key, auth_message);
  return "v=" + to_base64(server_signature);
}

}  // namespace sluice::auth
