// SCRAM-SHA-256 (RFC 5802, RFC 7677) for MQTT 5 enhanced authentication:
// the client proves it knows the password without sending it, and the
// server proves it holds the user's keys. The server stores, per user, a
// salt, an iteration count and two keys derived from the password; never
// the password, and nothing that logs in by itself.
//
// Exchange (authentication method "SCRAM-SHA-256"):
//   CONNECT  data = client-first  "n,,n=USER,r=CLIENT_NONCE"
//   AUTH 0x18 data = server-first "r=CLIENT_NONCE+SERVER_NONCE,s=SALT,i=ITERATIONS"
//   AUTH 0x18 data = client-final "c=biws,r=NONCE,p=PROOF"
//   CONNACK   data = server-final "v=SERVER_SIGNATURE"  (or CONNACK 0x86)
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace sluice::auth {

struct ScramCredential {
  std::vector<std::uint8_t> salt;
  std::uint32_t iterations = 4096;
  std::array<std::uint8_t, 32> stored_key{};
  std::array<std::uint8_t, 32> server_key{};
};

// "$scram-sha-256$ITERATIONS$SALT$STOREDKEY$SERVERKEY" (base64 fields).
std::optional<ScramCredential> parse_scram(std::string_view text);
std::string format_scram(const ScramCredential& credential);
ScramCredential make_scram(std::string_view password, std::uint32_t iterations = 4096);

using ScramUsers = std::unordered_map<std::string, ScramCredential>;

// One client's exchange, from its CONNECT to the CONNACK.
class ScramExchange {
 public:
  // Holds the users it was made with: a reload of the SCRAM file while the
  // exchange runs does not pull them from under it.
  explicit ScramExchange(std::shared_ptr<const ScramUsers> users) : users_(std::move(users)) {}

  // The server-first message for `client_first`; nullopt when it is malformed
  // (or asks for channel binding, which is not offered).
  std::optional<std::string> start(std::string_view client_first);
  // The server-final message when the proof in `client_final` is right.
  std::optional<std::string> finish(std::string_view client_final);

  const std::string& username() const { return username_; }

 private:
  std::shared_ptr<const ScramUsers> users_;
  std::string username_;
  std::string client_first_bare_;
  std::string server_first_;
  std::string nonce_;  // the client's and the server's, joined
  ScramCredential credential_;
  bool known_user_ = false;
};

}  // namespace sluice::auth
