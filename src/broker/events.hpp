// What happened, for the operator's webhooks (admin/webhooks.cpp): the
// broker says what happened where it happens; a sink decides whether anyone
// listens and takes it off the worker's hands. wants() is asked first, on
// the worker's path, so that nothing is built for an event nobody takes.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace sluice::broker {

enum class EventKind : std::uint8_t {
  kClientConnected,
  kClientDisconnected,
  kClientAuthFailed,
  kSessionCreated,
  kSessionExpired,
  kSessionTakenOver,
  kSubscriptionCreated,
  kSubscriptionRemoved,
  kMessagePublished,
  kMessageDropped,
  kQueueDeadLettered,
  kAuthzDenied,
};
inline constexpr std::size_t kEventKinds = 12;

// "client.connected", ...: the names webhooks are configured and sent with.
const char* event_name(EventKind kind);

struct Event {
  EventKind kind = EventKind::kClientConnected;
  std::string client_id;
  std::string username;  // verified; empty: anonymous
  std::string address;   // the client's address:port, where known
  std::string protocol;  // "3.1", "3.1.1", "5.0"
  std::string topic;     // the message's topic, or the subscription's filter
  std::string reason;    // why (a reason code's name, a drop's reason...)
  int qos = -1;          // -1: none
  bool retain = false;
  std::vector<std::uint8_t> payload;  // message.published only
  std::string queue;                  // queue.dead_lettered
  std::string group;                  // queue.dead_lettered: whose consumers failed it
  std::string message_id;             // queue.dead_lettered: <partition>:<offset>
};

class EventSink {
 public:
  virtual ~EventSink() = default;
  // Whether any endpoint takes `kind`: cheap, asked on every worker's path.
  virtual bool wants(EventKind kind) const = 0;
  // For message.published: whether any endpoint's topic filters match.
  virtual bool wants_message(std::string_view topic) const = 0;
  // From any thread; never waits on an endpoint (a full queue drops, counted).
  virtual void emit(Event&& event) = 0;
};

}  // namespace sluice::broker
