// Who holds which session in a cluster (docs/cluster.md, "Session
// ownership"): a CONNECT asks before it claims its client id, so that one
// session lives on one node at a time, and a session another node holds is
// handed over first. A single node has none (Broker::session_directory() is
// nullptr) and claims locally, as always. The cluster implements it.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "mqtt/reason_code.hpp"

namespace sluice::broker {

class SessionDirectory {
 public:
  virtual ~SessionDirectory() = default;

  struct Request {
    std::uint32_t shard = 0;  // the client id's
    std::string client_id;
    std::optional<std::string> identity;  // what the client proved; nullopt: anonymous
    bool clean_start = false;
    // The session will be stored (expiry > 0 and a store): one handed over
    // here is written to the store before it is owned.
    bool stored = false;
  };
  struct Outcome {
    bool owned = false;
    // When not owned: the CONNACK's reason code, and why.
    mqtt::ReasonCode refusal = mqtt::ReasonCode::kServerUnavailable;
    std::string reason;
  };
  // Makes this node the owner of `request.client_id`, taking the session
  // over from the node that holds it; a session handed over is in the
  // shard's sessions (offline) before `done` runs. `done` runs on the
  // shard's thread; the caller may be gone by then (it checks).
  virtual void claim(Request request, std::function<void(Outcome)> done) = 0;
  // The session ended here (on its shard's thread): its ownership goes.
  virtual void ended(const std::string& client_id) = 0;
  // Whether this node may serve sessions now (it holds its lease): a claim
  // that completes after the lease was lost is refused all the same.
  virtual bool serving() const = 0;
};

}  // namespace sluice::broker
