// A client of etcd's v3 API over gRPC (proto/etcd.proto): the few calls the
// cluster needs, each with a deadline, plus two long-running helpers, a
// lease kept alive and a watch that resumes where it left off. gRPC stays
// inside etcd_client.cpp.
//
// Blocking calls, made from the cluster's own threads (never a worker's).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace sluice::cluster {

struct KeyValue {
  std::string key;
  std::string value;
  std::int64_t create_revision = 0;
  std::int64_t mod_revision = 0;
  std::int64_t lease = 0;
};

struct WatchEvent {
  bool deleted = false;  // a DELETE (the key's lease expired, or it was deleted); else a PUT
  KeyValue kv;
};

// What a call ended with: `ok`, or why not (etcd unreachable, deadline...).
struct EtcdResult {
  bool ok = true;
  std::string error;
  static EtcdResult failed(std::string why) { return {false, std::move(why)}; }
};

class EtcdClient {
 public:
  struct Options {
    std::vector<std::string> endpoints;        // host:port
    std::string ca_file, cert_file, key_file;  // TLS to etcd when ca_file is set
    std::chrono::milliseconds timeout{5000};   // each call's deadline
  };
  explicit EtcdClient(const Options& options);
  ~EtcdClient();
  EtcdClient(const EtcdClient&) = delete;
  EtcdClient& operator=(const EtcdClient&) = delete;

  // Whether the client could be made (TLS files readable): if not, why.
  const std::string& setup_error() const { return setup_error_; }

  // `revision`, if given, gets the store's revision after the write (0 for
  // an erase that found nothing).
  EtcdResult put(const std::string& key, const std::string& value, std::int64_t lease = 0,
                 std::int64_t* revision = nullptr);
  EtcdResult erase(const std::string& key, std::int64_t* revision = nullptr);

  struct Range {
    std::vector<KeyValue> kvs;
    std::int64_t revision = 0;  // the store's revision the answer was read at
  };
  EtcdResult get_prefix(const std::string& prefix, Range& out);

  // `key` as the member this client talks to has it (a serializable read:
  // no round of the cluster's consensus, possibly a little behind). nullopt
  // in `out` when absent.
  EtcdResult get_local(const std::string& key, std::optional<KeyValue>& out);

  // Puts `key` = `value` (under `lease`) only if the key's mod revision is
  // `expected_mod_revision` (0: only if the key does not exist). `won` tells
  // whether it did; `current` is what the key holds afterwards (the winner's
  // value and revision either way).
  EtcdResult compare_and_put(const std::string& key, std::int64_t expected_mod_revision,
                             const std::string& value, std::int64_t lease, bool& won,
                             std::optional<KeyValue>& current);
  // Creates every key of `entries` (key, value), with no lease, only if none
  // of them exists: all or nothing, `won` tells which. etcd takes at most
  // 128 operations in one transaction (its --max-txn-ops). `revision`, if
  // given, gets the store's revision after the transaction.
  EtcdResult create_all(const std::vector<std::pair<std::string, std::string>>& entries, bool& won,
                        std::int64_t* revision = nullptr);
  // Deletes `key` only if its mod revision is `expected_mod_revision`.
  EtcdResult compare_and_erase(const std::string& key, std::int64_t expected_mod_revision,
                               bool& won);

  EtcdResult grant_lease(std::int64_t ttl_s, std::int64_t& lease_id);
  EtcdResult revoke_lease(std::int64_t lease_id);

  // Keeps `lease_id` alive from a thread of its own, renewing every third of
  // `ttl`. `lost` runs (on that thread, once) when etcd says the lease is gone
  // or no renewal succeeded for two thirds of `ttl` (counted from when
  // the last renewal that etcd answered was sent, so the lease is still alive
  // then and this node can let go of what it holds before anyone else may
  // take it): from then on, whatever was held under the lease must be taken
  // as lost. Stopped by stop_keepalive or
  // the destructor.
  void keep_alive(std::int64_t lease_id, std::chrono::seconds ttl, std::function<void()> lost);
  void stop_keepalive();

  // Watches every key under `prefix` from a thread of its own: `snapshot`
  // first gets all of them, then `events` each change in order. After a
  // broken stream the watch resumes from the revision after the last one it
  // delivered, so nothing is missed or repeated; when etcd compacted that
  // revision away, `snapshot` gets the whole prefix again. Both run on the
  // watch's thread.
  using Snapshot = std::function<void(const Range& range)>;
  using Events = std::function<void(const std::vector<WatchEvent>& events, std::int64_t revision)>;
  void watch_prefix(const std::string& prefix, Snapshot snapshot, Events events);
  void cancel_watches();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::string setup_error_;
};

// The key just past every key that starts with `prefix` (etcd's range_end).
std::string prefix_end(const std::string& prefix);

}  // namespace sluice::cluster
