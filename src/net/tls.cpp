// OpenSSL contexts and non-blocking TLS streams.
#include "net/tls.hpp"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

namespace sluice::net {
namespace {

std::string openssl_error() {
  const unsigned long code = ERR_get_error();
  ERR_clear_error();
  if (code == 0) return "unknown TLS error";
  char text[256];
  ERR_error_string_n(code, text, sizeof text);
  return text;
}

}  // namespace

std::shared_ptr<TlsContext> TlsContext::create(const config::TlsConfig& config,
                                               std::string& error) {
  std::shared_ptr<TlsContext> tls(new TlsContext());
  tls->context_ = SSL_CTX_new(TLS_server_method());
  tls->identity_as_username_ = config.use_identity_as_username;
  SSL_CTX* context = tls->context_;
  auto fail = [&](const std::string& what) {
    error = what + ": " + openssl_error();
    return nullptr;
  };
  if (context == nullptr) return fail("cannot create a TLS context");
  SSL_CTX_set_min_proto_version(context,
                                config.min_version == "1.3" ? TLS1_3_VERSION : TLS1_2_VERSION);
  // Writes may be partial and resumed from a moved buffer: the connection
  // retries with what is left, from wherever it then lies.
  SSL_CTX_set_mode(context, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                                SSL_MODE_RELEASE_BUFFERS);
  if (!config.ciphers.empty() && SSL_CTX_set_cipher_list(context, config.ciphers.c_str()) != 1) {
    return fail("tls.ciphers '" + config.ciphers + "'");
  }
  if (SSL_CTX_use_certificate_chain_file(context, config.cert_file.c_str()) != 1) {
    return fail("tls.cert_file " + config.cert_file);
  }
  if (SSL_CTX_use_PrivateKey_file(context, config.key_file.c_str(), SSL_FILETYPE_PEM) != 1) {
    return fail("tls.key_file " + config.key_file);
  }
  if (SSL_CTX_check_private_key(context) != 1) {
    return fail("tls.key_file " + config.key_file + " does not match tls.cert_file");
  }
  if (!config.ca_file.empty() &&
      SSL_CTX_load_verify_locations(context, config.ca_file.c_str(), nullptr) != 1) {
    return fail("tls.ca_file " + config.ca_file);
  }
  if (config.client_auth != "none") {
    int mode = SSL_VERIFY_PEER;
    if (config.client_auth == "require") mode |= SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
    SSL_CTX_set_verify(context, mode, nullptr);
  }
  return tls;
}

TlsContext::~TlsContext() {
  SSL_CTX_free(context_);
}

TlsStream::TlsStream(const std::shared_ptr<TlsContext>& context, int fd) : context_(context) {
  ssl_ = SSL_new(context_->native());
  SSL_set_fd(ssl_, fd);
  SSL_set_accept_state(ssl_);
}

TlsStream::~TlsStream() {
  SSL_free(ssl_);
}

void TlsStream::rebind(int fd) {
  SSL_set_fd(ssl_, fd);
}

TlsStream::Want TlsStream::classify(int result) {
  switch (SSL_get_error(ssl_, result)) {
    case SSL_ERROR_WANT_READ:
      return Want::kRead;
    case SSL_ERROR_WANT_WRITE:
      return Want::kWrite;
    case SSL_ERROR_ZERO_RETURN:
      return Want::kClosed;
    case SSL_ERROR_SYSCALL:
      last_error_ = "the connection closed during TLS";
      ERR_clear_error();
      return Want::kError;
    default:
      last_error_ = openssl_error();
      return Want::kError;
  }
}

TlsStream::Want TlsStream::handshake() {
  const int result = SSL_do_handshake(ssl_);
  return result == 1 ? Want::kNone : classify(result);
}

TlsStream::Result TlsStream::read(std::span<std::uint8_t> buffer) {
  std::size_t got = 0;
  const int result = SSL_read_ex(ssl_, buffer.data(), buffer.size(), &got);
  if (result == 1) return {got, Want::kNone};
  return {0, classify(result)};
}

TlsStream::Result TlsStream::write(std::span<const std::uint8_t> bytes) {
  std::size_t written = 0;
  const int result = SSL_write_ex(ssl_, bytes.data(), bytes.size(), &written);
  if (result == 1) return {written, Want::kNone};
  return {0, classify(result)};
}

void TlsStream::shutdown() {
  if (SSL_is_init_finished(ssl_) == 1) SSL_shutdown(ssl_);
  ERR_clear_error();
}

std::optional<std::string> TlsStream::peer_common_name() const {
  X509* certificate = SSL_get1_peer_certificate(ssl_);
  if (certificate == nullptr) return std::nullopt;
  std::optional<std::string> name;
  if (SSL_get_verify_result(ssl_) == X509_V_OK) {
    X509_NAME* subject = X509_get_subject_name(certificate);
    char text[256];
    const int length = X509_NAME_get_text_by_NID(subject, NID_commonName, text, sizeof text);
    if (length > 0) name = std::string(text, static_cast<std::size_t>(length));
  }
  X509_free(certificate);
  return name;
}

}  // namespace sluice::net
