// TLS for listeners with `transport: tls`: OpenSSL straight on the
// connection's non-blocking socket, driven by the connection's own
// readiness waits, so a TLS connection reads through the worker's shared
// buffer like a plain one. OpenSSL's headers stay in tls.cpp.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>

#include "config/config.hpp"

struct ssl_st;
struct ssl_ctx_st;

namespace sluice::net {

// One listener's certificates and policy; shared by its connections.
class TlsContext {
 public:
  // Loads the files `config` names; nullptr with the reason in `error`.
  static std::shared_ptr<TlsContext> create(const config::TlsConfig& config, std::string& error);
  ~TlsContext();
  TlsContext(const TlsContext&) = delete;
  TlsContext& operator=(const TlsContext&) = delete;

  ssl_ctx_st* native() const { return context_; }
  bool identity_as_username() const { return identity_as_username_; }

 private:
  TlsContext() = default;
  ssl_ctx_st* context_ = nullptr;
  bool identity_as_username_ = false;
};

// One connection's TLS state. Each call does what it can without blocking
// and says what the socket must become before it can do more.
class TlsStream {
 public:
  enum class Want { kNone, kRead, kWrite, kClosed, kError };
  struct Result {
    std::size_t bytes = 0;
    Want want = Want::kNone;
  };

  TlsStream(const std::shared_ptr<TlsContext>& context, int fd);
  ~TlsStream();
  TlsStream(const TlsStream&) = delete;
  TlsStream& operator=(const TlsStream&) = delete;

  // kNone once the handshake is complete.
  Want handshake();
  Result read(std::span<std::uint8_t> buffer);
  Result write(std::span<const std::uint8_t> bytes);
  // Sends close_notify if the socket takes it now; never waits.
  void shutdown();
  // The socket was duplicated to move to another worker.
  void rebind(int fd);

  // The subject CN of a verified client certificate.
  std::optional<std::string> peer_common_name() const;
  bool identity_as_username() const { return context_->identity_as_username(); }
  // The last error OpenSSL reported, for the log.
  std::string last_error() const { return last_error_; }

 private:
  Want classify(int result);

  std::shared_ptr<TlsContext> context_;
  ssl_st* ssl_ = nullptr;
  std::string last_error_;
};

}  // namespace sluice::net
