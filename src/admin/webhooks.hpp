// Webhooks (docs/admin.md): events the broker emits, POSTed as JSON to the
// configured endpoints. A worker only hands the event over, into each
// endpoint's bounded queue (dropped, counted, when full); each endpoint has a
// sender thread of its own that posts, with retries and exponential backoff,
// so a receiver that is slow or down costs MQTT traffic nothing.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "broker/events.hpp"
#include "config/config.hpp"

namespace sluice::admin {

class Webhooks final : public broker::EventSink {
 public:
  // nullptr, with the reason, for a topic filter that is not one.
  static std::unique_ptr<Webhooks> create(const std::vector<config::WebhookConfig>& hooks,
                                          std::string& error);
  ~Webhooks() override;
  Webhooks(const Webhooks&) = delete;
  Webhooks& operator=(const Webhooks&) = delete;

  bool wants(broker::EventKind kind) const override {
    return wanted_[static_cast<std::size_t>(kind)];
  }
  bool wants_message(std::string_view topic) const override;
  void emit(broker::Event&& event) override;

  // Sends what is queued for up to `grace`, then stops the senders; what is
  // still queued then is dropped (counted). Once.
  void stop(std::chrono::milliseconds grace);

  struct EndpointStats {
    std::string name;
    std::uint64_t delivered = 0;
    std::uint64_t failed = 0;   // every attempt failed
    std::uint64_t dropped = 0;  // the queue was full, or the broker stopped
    std::uint64_t queued = 0;
  };
  std::vector<EndpointStats> stats() const;

  // The body of one event (public for its tests): {"id", "event",
  // "timestamp_ms", and the event's fields}.
  static std::string body(const broker::Event& event, const std::string& id,
                          std::int64_t timestamp_ms);
  // "sha256=" and the hex HMAC-SHA256 of `body` with `secret`.
  static std::string signature(std::string_view secret, std::string_view body);

 private:
  Webhooks() = default;
  struct Endpoint;
  std::vector<std::unique_ptr<Endpoint>> endpoints_;
  std::array<bool, broker::kEventKinds> wanted_{};
};

}  // namespace sluice::admin
