// The WebSocket upgrade (parsed with Boost.Beast's HTTP parser) and framing.
#include "net/websocket.hpp"

#include <openssl/sha.h>

#include <algorithm>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/rfc7230.hpp>

#include "auth/base64.hpp"

namespace sluice::net {
namespace http = boost::beast::http;

namespace {

constexpr std::size_t kMaxRequestBytes = 8 * 1024;
constexpr std::string_view kAcceptGuid = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

enum Opcode : std::uint8_t {
  kContinuation = 0x0,
  kText = 0x1,
  kBinary = 0x2,
  kClose = 0x8,
  kPing = 0x9,
  kPong = 0xA
};

void append_text(std::vector<std::uint8_t>& out, std::string_view text) {
  out.insert(out.end(), text.begin(), text.end());
}

std::string accept_key(std::string_view key) {
  std::string input(key);
  input += kAcceptGuid;
  std::uint8_t digest[SHA_DIGEST_LENGTH];
  SHA1(reinterpret_cast<const unsigned char*>(input.data()), input.size(), digest);
  return auth::to_base64(digest);
}

void append_control(std::vector<std::uint8_t>& out, Opcode opcode,
                    std::span<const std::uint8_t> payload) {
  out.push_back(static_cast<std::uint8_t>(0x80 | opcode));
  out.push_back(static_cast<std::uint8_t>(payload.size()));  // control payloads are < 126
  out.insert(out.end(), payload.begin(), payload.end());
}

void refuse(std::vector<std::uint8_t>& reply, std::string_view status) {
  append_text(reply, "HTTP/1.1 ");
  append_text(reply, status);
  append_text(reply, "\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
}

// Whether a comma-separated header lists `token` (case-insensitively).
bool lists(std::string_view header, std::string_view token) {
  for (const auto& item :
       http::token_list(boost::beast::string_view(header.data(), header.size()))) {
    if (boost::beast::iequals(item, boost::beast::string_view(token.data(), token.size()))) {
      return true;
    }
  }
  return false;
}

}  // namespace

bool WebSocketSession::origin_allowed(const std::vector<std::string>& allowed,
                                      std::string_view origin) {
  const std::size_t scheme_end = origin.find("://");
  const std::string_view host =
      scheme_end == std::string_view::npos ? origin : origin.substr(scheme_end + 3);
  for (const std::string& entry : allowed) {
    if (entry == origin) return true;
    if (entry.starts_with("*.")) {
      const std::string_view suffix = std::string_view(entry).substr(1);  // ".example.com"
      // The host part, without a port, must end in the suffix.
      const std::string_view name = host.substr(0, host.find(':'));
      if (name.size() > suffix.size() && name.ends_with(suffix)) return true;
    }
  }
  return false;
}

void WebSocketSession::append_frame_header(std::vector<std::uint8_t>& out,
                                           std::size_t payload_bytes) {
  out.push_back(0x80 | kBinary);
  if (payload_bytes < 126) {
    out.push_back(static_cast<std::uint8_t>(payload_bytes));
  } else if (payload_bytes <= 0xFFFF) {
    out.push_back(126);
    out.push_back(static_cast<std::uint8_t>(payload_bytes >> 8));
    out.push_back(static_cast<std::uint8_t>(payload_bytes & 0xFF));
  } else {
    out.push_back(127);
    for (int shift = 56; shift >= 0; shift -= 8)
      out.push_back(
          static_cast<std::uint8_t>((static_cast<std::uint64_t>(payload_bytes) >> shift) & 0xFF));
  }
}

WebSocketSession::Status WebSocketSession::consume(std::span<const std::uint8_t> input,
                                                   std::vector<std::uint8_t>& mqtt,
                                                   std::vector<std::uint8_t>& reply) {
  if (state_ == State::kClosed) return Status::kClose;
  pending_.insert(pending_.end(), input.begin(), input.end());
  if (state_ == State::kHandshake) {
    if (handshake(reply) == Status::kClose) return Status::kClose;
    if (state_ == State::kHandshake) return Status::kOpen;  // the request is not whole yet
  }
  return frames(mqtt, reply);
}

WebSocketSession::Status WebSocketSession::handshake(std::vector<std::uint8_t>& reply) {
  const std::string_view text(reinterpret_cast<const char*>(pending_.data()), pending_.size());
  const std::size_t end = text.find("\r\n\r\n");
  if (end == std::string_view::npos) {
    if (pending_.size() <= kMaxRequestBytes) return Status::kOpen;
    refuse(reply, "431 Request Header Fields Too Large");
    state_ = State::kClosed;
    return Status::kClose;
  }
  http::request_parser<http::empty_body> parser;
  parser.eager(true);
  boost::beast::error_code error;
  parser.put(boost::asio::buffer(pending_.data(), end + 4), error);
  auto bad = [&](std::string_view status) {
    refuse(reply, status);
    state_ = State::kClosed;
    return Status::kClose;
  };
  if (error || !parser.is_header_done()) return bad("400 Bad Request");
  const auto& request = parser.get();
  const std::string_view target(request.target().data(), request.target().size());
  if (target.substr(0, target.find('?')) != config_->path) return bad("404 Not Found");
  const auto header = [&](http::field field) {
    const auto value = request[field];
    return std::string_view(value.data(), value.size());
  };
  if (request.method() != http::verb::get || !lists(header(http::field::upgrade), "websocket") ||
      !lists(header(http::field::connection), "upgrade") ||
      header(http::field::sec_websocket_version) != "13" ||
      header(http::field::sec_websocket_key).empty()) {
    return bad("400 Bad Request");
  }
  // Browsers always send Origin; other clients usually do not, and are let in.
  const std::string_view origin = header(http::field::origin);
  if (!origin.empty() && !config_->allowed_origins.empty() &&
      !origin_allowed(config_->allowed_origins, origin)) {
    return bad("403 Forbidden");
  }
  // [MQTT-6.0.0-3] the subprotocol is "mqtt" (3.1 clients say "mqttv3.1").
  const std::string_view protocols = header(http::field::sec_websocket_protocol);
  std::string_view chosen;
  for (std::string_view candidate : {"mqtt", "mqttv3.1"}) {
    if (chosen.empty() && lists(protocols, candidate)) chosen = candidate;
  }
  if (chosen.empty()) return bad("400 Bad Request");
  append_text(reply,
              "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              "Sec-WebSocket-Accept: ");
  append_text(reply, accept_key(header(http::field::sec_websocket_key)));
  append_text(reply, "\r\nSec-WebSocket-Protocol: ");
  append_text(reply, chosen);
  append_text(reply, "\r\n\r\n");
  pending_.erase(pending_.begin(), pending_.begin() + static_cast<std::ptrdiff_t>(end + 4));
  state_ = State::kOpen;
  return Status::kOpen;
}

WebSocketSession::Status WebSocketSession::frames(std::vector<std::uint8_t>& mqtt,
                                                  std::vector<std::uint8_t>& reply) {
  std::size_t at = 0;
  auto close_with = [&](std::uint16_t code) {
    const std::uint8_t payload[2] = {static_cast<std::uint8_t>(code >> 8),
                                     static_cast<std::uint8_t>(code & 0xFF)};
    append_control(reply, kClose, payload);
    state_ = State::kClosed;
    pending_.clear();
    return Status::kClose;
  };
  while (at < pending_.size()) {
    if (data_left_ > 0) {
      // Inside a data frame: unmask what has come, however little, so that
      // a large frame is never held whole.
      const auto n =
          static_cast<std::size_t>(std::min<std::uint64_t>(data_left_, pending_.size() - at));
      const std::size_t start = mqtt.size();
      mqtt.resize(start + n);
      for (std::size_t i = 0; i < n; ++i)
        mqtt[start + i] = pending_[at + i] ^ mask_[(mask_offset_ + i) % 4];
      at += n;
      data_left_ -= n;
      mask_offset_ += n;
      continue;
    }
    const std::uint8_t* head = pending_.data() + at;
    const std::size_t available = pending_.size() - at;
    if (available < 2) break;
    const std::uint8_t opcode = head[0] & 0x0F;
    std::uint64_t length = head[1] & 0x7F;
    const std::size_t header = length == 126 ? 4 : length == 127 ? 10 : 2;
    if (available < header + 4) break;
    if (length == 126) length = (std::uint64_t{head[2]} << 8) | head[3];
    if (length == 127) {
      length = 0;
      for (int i = 0; i < 8; ++i)
        length = (length << 8) | head[2 + i];
    }
    // Clients must mask (RFC 6455 section 5.1); reserved bits are errors.
    if ((head[1] & 0x80) == 0 || (head[0] & 0x70) != 0) return close_with(1002);
    const std::uint8_t* mask = head + header;
    if (opcode == kBinary || opcode == kContinuation) {
      std::copy(mask, mask + 4, mask_.begin());
      mask_offset_ = 0;
      data_left_ = length;
      at += header + 4;
      continue;
    }
    if (opcode == kText) return close_with(1003);  // [MQTT-6.0.0-1] binary frames only
    if (length > 125 || (head[0] & 0x80) == 0) return close_with(1002);  // control frames
    if (available < header + 4 + length) break;
    const std::uint8_t* payload = mask + 4;
    const auto size = static_cast<std::size_t>(length);
    if (opcode == kPing) {
      std::vector<std::uint8_t> data(size);
      for (std::size_t i = 0; i < size; ++i)
        data[i] = payload[i] ^ mask[i % 4];
      append_control(reply, kPong, data);
    } else if (opcode == kClose) {
      return close_with(1000);
    } else if (opcode != kPong) {
      return close_with(1002);
    }
    at += header + 4 + size;
  }
  pending_.erase(pending_.begin(), pending_.begin() + static_cast<std::ptrdiff_t>(at));
  return Status::kOpen;
}

}  // namespace sluice::net
