// The cluster's keys in etcd (docs/cluster.md):
//
//   /sluice/nodes/<node_id>            JSON {advertise, version}: under the node's lease
//   /sluice/routes/<node_id>/<filter>  empty: under the node's lease
//   /sluice/sessions/<client_id>       the owning node's id: under its lease
//   /sluice/queues/<name>              the queue's home node id: no lease (queue_homes.hpp)
//
// A node's keys share its lease, so a node that dies takes them with it
// when the lease runs out. Nobody else ever writes a node's or its routes'
// keys; a session's key changes hands only by a transaction that compares
// its revision (session_owner.hpp).
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <utility>

namespace sluice::cluster::keys {

inline const std::string kNodes = "/sluice/nodes/";
inline const std::string kRoutes = "/sluice/routes/";
inline const std::string kSessions = "/sluice/sessions/";
inline const std::string kQueues = "/sluice/queues/";

inline std::string node(std::string_view id) {
  return kNodes + std::string(id);
}
inline std::string route(std::string_view node_id, std::string_view filter) {
  return kRoutes + std::string(node_id) + "/" + std::string(filter);
}
inline std::string routes_of(std::string_view node_id) {
  return kRoutes + std::string(node_id) + "/";
}

// (node id, filter) of a route key; nullopt for anything else.
inline std::optional<std::pair<std::string, std::string>> parse_route(std::string_view key) {
  if (!key.starts_with(kRoutes)) return std::nullopt;
  key.remove_prefix(kRoutes.size());
  const auto slash = key.find('/');  // node ids have none; filters may
  if (slash == std::string_view::npos || slash == 0) return std::nullopt;
  return std::pair{std::string(key.substr(0, slash)), std::string(key.substr(slash + 1))};
}

inline std::string session(std::string_view client_id) {
  return kSessions + std::string(client_id);
}
inline std::optional<std::string> parse_session(std::string_view key) {
  if (!key.starts_with(kSessions)) return std::nullopt;
  return std::string(key.substr(kSessions.size()));
}

inline std::string queue(std::string_view name) {
  return kQueues + std::string(name);
}
inline std::optional<std::string> parse_queue(std::string_view key) {
  if (!key.starts_with(kQueues) || key.size() == kQueues.size()) return std::nullopt;
  return std::string(key.substr(kQueues.size()));
}

inline std::optional<std::string> parse_node(std::string_view key) {
  if (!key.starts_with(kNodes) || key.size() == kNodes.size()) return std::nullopt;
  return std::string(key.substr(kNodes.size()));
}

}  // namespace sluice::cluster::keys
