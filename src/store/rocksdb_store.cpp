// The RocksDB store: one column family per kind of record, every change
// through one rocksdb::WriteBatch (atomic, in the write-ahead log), and a
// format marker checked at open so that a directory from another format is
// refused instead of misread or emptied.
#include <rocksdb/db.h>
#include <rocksdb/options.h>
#include <rocksdb/utilities/table_properties_collectors.h>
#include <rocksdb/write_batch.h>

#include <array>
#include <filesystem>

#include "store/record_codec.hpp"
#include "store/store.hpp"

namespace sluice::store {
namespace {

constexpr const char* kFormatKey = "sluice.format";
constexpr const char* kFormatValue = "1";

enum Family : std::size_t {
  kMeta,
  kSessions,
  kSubscriptions,
  kOutbound,
  kInbound,
  kMessages,
  kRetained,
  kFamilies
};
constexpr std::array<const char*, kFamilies> kFamilyNames = {
    "default", "sessions", "subscriptions", "outbound",  // "default": RocksDB's own family
    "inbound", "messages", "retained"};

class RocksDbStore final : public Store {
 public:
  RocksDbStore(std::unique_ptr<rocksdb::DB> db, std::vector<rocksdb::ColumnFamilyHandle*> families)
      : db_(std::move(db)), families_(std::move(families)) {}

  ~RocksDbStore() override {
    for (auto* family : families_)
      db_->DestroyColumnFamilyHandle(family);
    db_->Close();
  }

  Status write(const WriteBatch& batch, bool sync) override {
    rocksdb::WriteBatch out;
    for (const auto& operation : batch.operations()) {
      std::visit([&](const auto& op) { add(out, op); }, operation);
    }
    rocksdb::WriteOptions options;
    options.sync = sync;
    const rocksdb::Status status = db_->Write(options, &out);
    return status.ok() ? Status{} : Status::error("store write failed: " + status.ToString());
  }

  Status sync() override {
    const rocksdb::Status status = db_->SyncWAL();
    return status.ok() ? Status{} : Status::error("store sync failed: " + status.ToString());
  }

  Status load(LoadVisitor& visitor) override {
    Status status = each_record<SessionRecord>(kSessions, [&](std::string_view, auto&& record) {
      visitor.session(std::move(record));
      return true;
    });
    if (status.ok) {
      status =
          each_record<SubscriptionRecord>(kSubscriptions, [&](std::string_view, auto&& record) {
            visitor.subscription(std::move(record));
            return true;
          });
    }
    if (status.ok) {
      status = each_record<OutboundRecord>(kOutbound, [&](std::string_view, auto&& record) {
        visitor.outbound(std::move(record));
        return true;
      });
    }
    if (status.ok) {
      status = each(kInbound, [&](std::string_view key, std::string_view) {
        const auto parsed = codec::parse_inbound_key(key);
        if (!parsed) return corrupt(kInbound, key);
        visitor.inbound(parsed->first, parsed->second);
        return Status{};
      });
    }
    if (status.ok) {
      status = each_record<MessageRecord>(kMessages, [&](std::string_view key, auto&& record) {
        const auto id = codec::parse_message_key(key);
        if (id) visitor.message(*id, std::move(record));
        return id.has_value();
      });
    }
    if (status.ok) {
      status = each_record<MessageRecord>(kRetained, [&](std::string_view, auto&& record) {
        visitor.retained(std::move(record));
        return true;
      });
    }
    return status;
  }

 private:
  rocksdb::ColumnFamilyHandle* cf(Family family) const { return families_[family]; }

  static Status corrupt(Family family, std::string_view key) {
    return Status::error(std::string("corrupt record in ") + kFamilyNames[family] + " (key of " +
                         std::to_string(key.size()) + " bytes)");
  }

  template <class F>
  Status each(Family family, F&& f) {
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), cf(family)));
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      const Status status = f(std::string_view(it->key().data(), it->key().size()),
                              std::string_view(it->value().data(), it->value().size()));
      if (!status.ok) return status;
    }
    if (!it->status().ok()) return Status::error("store read failed: " + it->status().ToString());
    return {};
  }

  // Decodes every value of `family` as a `Record` and hands it to `visit`,
  // which returns false when the key is not what it should be.
  template <class Record, class F>
  Status each_record(Family family, F&& visit) {
    return each(family, [&](std::string_view key, std::string_view value) {
      Record record;
      if (!codec::decode(value, record) || !visit(key, std::move(record))) {
        return corrupt(family, key);
      }
      return Status{};
    });
  }

  void delete_client_range(rocksdb::WriteBatch& out, Family family, const std::string& client_id) {
    out.DeleteRange(cf(family), codec::client_prefix(client_id),
                    codec::client_prefix_end(client_id));
  }

  void add(rocksdb::WriteBatch& out, const WriteBatch::PutSession& op) {
    out.Put(cf(kSessions), op.record.client_id, codec::encode(op.record));
  }
  void add(rocksdb::WriteBatch& out, const WriteBatch::DeleteSession& op) {
    out.Delete(cf(kSessions), op.client_id);
    delete_client_range(out, kSubscriptions, op.client_id);
    delete_client_range(out, kOutbound, op.client_id);
    delete_client_range(out, kInbound, op.client_id);
  }
  void add(rocksdb::WriteBatch& out, const WriteBatch::PutSubscription& op) {
    out.Put(cf(kSubscriptions), codec::subscription_key(op.record.client_id, op.record.filter),
            codec::encode(op.record));
  }
  void add(rocksdb::WriteBatch& out, const WriteBatch::DeleteSubscription& op) {
    out.Delete(cf(kSubscriptions), codec::subscription_key(op.client_id, op.filter));
  }
  void add(rocksdb::WriteBatch& out, const WriteBatch::PutMessage& op) {
    out.Put(cf(kMessages), codec::message_key(op.id), codec::encode(op.record));
  }
  void add(rocksdb::WriteBatch& out, const WriteBatch::DeleteMessage& op) {
    out.Delete(cf(kMessages), codec::message_key(op.id));
  }
  void add(rocksdb::WriteBatch& out, const WriteBatch::PutOutbound& op) {
    out.Put(cf(kOutbound), codec::outbound_key(op.record.client_id, op.record.message_id),
            codec::encode(op.record));
  }
  void add(rocksdb::WriteBatch& out, const WriteBatch::DeleteOutbound& op) {
    out.Delete(cf(kOutbound), codec::outbound_key(op.client_id, op.message_id));
  }
  void add(rocksdb::WriteBatch& out, const WriteBatch::PutInbound& op) {
    out.Put(cf(kInbound), codec::inbound_key(op.client_id, op.packet_id), "");
  }
  void add(rocksdb::WriteBatch& out, const WriteBatch::DeleteInbound& op) {
    out.Delete(cf(kInbound), codec::inbound_key(op.client_id, op.packet_id));
  }
  void add(rocksdb::WriteBatch& out, const WriteBatch::PutRetained& op) {
    out.Put(cf(kRetained), op.record.topic, codec::encode(op.record));
  }
  void add(rocksdb::WriteBatch& out, const WriteBatch::DeleteRetained& op) {
    out.Delete(cf(kRetained), op.topic);
  }

  std::unique_ptr<rocksdb::DB> db_;
  std::vector<rocksdb::ColumnFamilyHandle*> families_;
};

}  // namespace

Status open_rocksdb_store(const std::string& directory, std::unique_ptr<Store>& out) {
  const bool existed = std::filesystem::exists(std::filesystem::path(directory) / "CURRENT");
  rocksdb::Options options;
  options.create_if_missing = !existed;
  options.create_missing_column_families = !existed;
  options.error_if_exists = false;
  // The write-ahead log is what makes a write durable; bounding it makes
  // RocksDB flush memtables (and so drop old log files) before it grows
  // beyond this, whatever the traffic.
  options.max_total_wal_size = 256ull << 20;
  std::vector<rocksdb::ColumnFamilyDescriptor> descriptors;
  for (std::size_t family = 0; family < kFamilies; ++family) {
    rocksdb::ColumnFamilyOptions family_options;
    if (family == kOutbound || family == kMessages || family == kInbound) {
      // Queues: nearly every record is deleted soon after it is written. A
      // table file that is mostly deletions is compacted early, so the
      // tombstones do not pile up on disk or slow the next start's scan.
      family_options.table_properties_collector_factories.push_back(
          rocksdb::NewCompactOnDeletionCollectorFactory(128 * 1024, 64 * 1024, 0.5));
    }
    descriptors.emplace_back(kFamilyNames[family], family_options);
  }
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::DB* raw = nullptr;
  const rocksdb::Status opened = rocksdb::DB::Open(options, directory, descriptors, &handles, &raw);
  if (!opened.ok()) {
    return Status::error("cannot open the store in " + directory + ": " + opened.ToString() +
                         (existed ? " (it was not changed)" : ""));
  }
  std::unique_ptr<rocksdb::DB> db(raw);
  std::string format;
  const rocksdb::Status read = db->Get(rocksdb::ReadOptions(), handles[kMeta], kFormatKey, &format);
  Status status;
  if (read.IsNotFound() && !existed) {
    rocksdb::WriteOptions sync;
    sync.sync = true;
    const rocksdb::Status written = db->Put(sync, handles[kMeta], kFormatKey, kFormatValue);
    if (!written.ok()) status = Status::error("cannot initialise the store: " + written.ToString());
  } else if (!read.ok()) {
    status = Status::error("the store in " + directory + " is not a Sluice store (" +
                           read.ToString() + "); it was not changed");
  } else if (format != kFormatValue) {
    status = Status::error("the store in " + directory + " has format " + format +
                           ", this sluice reads format " + kFormatValue + "; it was not changed");
  }
  if (!status.ok) {
    for (auto* handle : handles)
      db->DestroyColumnFamilyHandle(handle);
    db->Close();
    return status;
  }
  out = std::make_unique<RocksDbStore>(std::move(db), std::move(handles));
  return {};
}

}  // namespace sluice::store
