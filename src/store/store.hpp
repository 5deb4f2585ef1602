// The store interface: atomic batches of changes, and reading everything back
// at start-up. Two implementations: RocksDB (on disk, with its write-ahead
// log) and memory (tests, and `storage.engine: memory`).
#pragma once

#include <memory>
#include <string>

#include "store/records.hpp"
#include "store/write_batch.hpp"

namespace sluice::store {

struct Status {
  bool ok = true;
  std::string message;  // what failed, for the log and the start-up error

  static Status error(std::string text) { return {false, std::move(text)}; }
};

// Receives what a store holds, kind by kind in this order: sessions,
// subscriptions, outbound records (by client id, then message id), inbound
// QoS 2 ids, messages (by id), retained messages.
class LoadVisitor {
 public:
  virtual ~LoadVisitor() = default;
  virtual void session(SessionRecord&& record) = 0;
  virtual void subscription(SubscriptionRecord&& record) = 0;
  virtual void outbound(OutboundRecord&& record) = 0;
  virtual void inbound(const std::string& client_id, std::uint16_t packet_id) = 0;
  virtual void message(std::uint64_t id, MessageRecord&& record) = 0;
  virtual void retained(MessageRecord&& record) = 0;
};

class Store {
 public:
  virtual ~Store() = default;

  // Applies `batch` atomically. With `sync`, returns once it is on disk.
  virtual Status write(const WriteBatch& batch, bool sync) = 0;

  virtual Status load(LoadVisitor& visitor) = 0;

  // Makes every write so far durable (fsync of the write-ahead log).
  virtual Status sync() = 0;
};

std::unique_ptr<Store> make_memory_store();

// Opens (creating if needed) a RocksDB store in `directory`. A directory
// holding another format, or that cannot be opened, is an error: it is never
// emptied to start afresh.
Status open_rocksdb_store(const std::string& directory, std::unique_ptr<Store>& out);

}  // namespace sluice::store
