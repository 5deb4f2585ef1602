// The store interface: atomic batches of changes, reading the broker's state
// back at start-up, and reading key spaces by range. Two implementations:
// RocksDB (on disk, with its write-ahead log) and memory (tests, and
// `storage.engine: memory`).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "store/records.hpp"
#include "store/write_batch.hpp"

namespace sluice::store {

struct Status {
  bool ok = true;
  std::string message;  // what failed, for the log and the start-up error

  static Status error(std::string text) { return {false, std::move(text)}; }
};

// Receives what a store holds, kind by kind in this order: sessions, wills,
// subscriptions, outbound records (by client id, then message id), inbound
// QoS 2 ids, messages (by id), retained messages. Key spaces (Space) are not
// loaded: they are read with Store::scan.
class LoadVisitor {
 public:
  virtual ~LoadVisitor() = default;
  virtual void session(SessionRecord&& record) = 0;
  virtual void will(const std::string& client_id, WillRecord&& record) = 0;
  virtual void subscription(SubscriptionRecord&& record) = 0;
  virtual void outbound(OutboundRecord&& record) = 0;
  virtual void inbound(const std::string& client_id, std::uint16_t packet_id) = 0;
  virtual void message(std::uint64_t id, MessageRecord&& record) = 0;
  virtual void retained(MessageRecord&& record) = 0;
};

// What a store holds beyond its records, said at open: how far it is
// known to be durable, and what a recovery found missing.
struct OpenReport {
  // The store's format when it was opened (an older one was migrated).
  std::uint32_t format_found = 0;
  // Writes acknowledged before the last stop that the store no longer has;
  // non-zero only when opened with `recover` (otherwise the open fails).
  std::uint64_t lost_writes = 0;
  bool repaired = false;  // RocksDB rebuilt the store's manifest (recover)
  // Set when the store could not be checked for lost writes (a store made
  // before the check existed, or whose marker file is gone).
  bool unchecked = false;
};

class Store {
 public:
  virtual ~Store() = default;

  // Applies `batch` atomically. With `sync`, returns once it is on disk.
  virtual Status write(const WriteBatch& batch, bool sync) = 0;

  virtual Status load(LoadVisitor& visitor) = 0;

  // Calls `visit(key, value)` for the entries of `space` with `from` <= key <
  // `to` (an empty `to`: to the end), in key order, until it returns false.
  virtual Status scan(Space space, std::string_view from, std::string_view to,
                      const std::function<bool(std::string_view, std::string_view)>& visit) = 0;
  // The same from the last entry below `to` down to `from` (a log's end is
  // found without reading it all).
  virtual Status scan_back(
      Space space, std::string_view from, std::string_view to,
      const std::function<bool(std::string_view, std::string_view)>& visit) = 0;

  // Makes every write so far durable (fsync of the write-ahead log).
  virtual Status sync() = 0;
};

std::unique_ptr<Store> make_memory_store();

struct OpenOptions {
  // Start from what is readable when the store lost acknowledged writes or
  // its manifest is damaged (RocksDB's repair), instead of refusing to open.
  bool recover = false;
};

// Opens (creating if needed) a RocksDB store in `directory`. A directory
// holding another format, or that cannot be opened, is an error: it is never
// emptied to start afresh. A store of an older format is migrated. A store
// that lost writes it had made durable (a damaged write-ahead log or
// manifest) is refused with what is damaged and how to recover, unless
// `options.recover`.
Status open_rocksdb_store(const std::string& directory, const OpenOptions& options,
                          std::unique_ptr<Store>& out, OpenReport& report);
inline Status open_rocksdb_store(const std::string& directory, std::unique_ptr<Store>& out) {
  OpenReport report;
  return open_rocksdb_store(directory, OpenOptions{}, out, report);
}

}  // namespace sluice::store
