// The RocksDB store: one column family per kind of record, every change
// through one rocksdb::WriteBatch (atomic, in the write-ahead log), a format
// marker checked at open so that a directory from another format is refused
// instead of misread or emptied, and migration of older formats.
//
// Lost writes. RocksDB replays its write-ahead log up to the first damaged
// record and reports nothing when the log was cut short, and a damaged
// MANIFEST can open as a database with families, or everything, missing.
// Both would start the broker without data it had acknowledged. So every
// write through this store carries a count of the writes so far
// (`sluice.writes`, in the same atomic batch as the data), and after every
// write or sync that makes data durable the count goes into a small file
// beside the database (durable_mark.hpp). At open, a database whose count is
// below that mark lost acknowledged writes, and is refused. (RocksDB's own
// sequence numbers cannot serve: the MANIFEST records the latest one at
// every flush, so a log cut short after a flush of another family would not
// show.) RocksDB's paranoid checks run too, and a family the format
// promises but the MANIFEST lacks is damage as well.
#include <fcntl.h>
#include <rocksdb/db.h>
#include <rocksdb/options.h>
#include <rocksdb/utilities/table_properties_collectors.h>
#include <rocksdb/write_batch.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <filesystem>
#include <set>

#include "store/durable_mark.hpp"
#include "store/record_codec.hpp"
#include "store/store.hpp"

namespace sluice::store {
namespace {

constexpr const char* kFormatKey = "sluice.format";
// The number of writes made through the store, in the meta family.
constexpr const char* kWritesKey = "sluice.writes";

std::string encode_count(std::uint64_t count) {
  std::string bytes(8, '\0');
  for (int i = 7; i >= 0; --i, count >>= 8)
    bytes[static_cast<std::size_t>(i)] = static_cast<char>(count & 0xFF);
  return bytes;
}

// The count of writes a database holds: nullopt for a database made before
// counting (or a value that is not one); a failed read is an error.
Status read_count(rocksdb::DB& db, rocksdb::ColumnFamilyHandle* meta,
                  std::optional<std::uint64_t>& count) {
  std::string bytes;
  const rocksdb::Status read = db.Get(rocksdb::ReadOptions(), meta, kWritesKey, &bytes);
  count.reset();
  if (read.IsNotFound()) return {};
  if (!read.ok()) return Status::error("store read failed: " + read.ToString());
  if (bytes.size() != 8) return {};
  std::uint64_t value = 0;
  for (char c : bytes)
    value = (value << 8) | static_cast<std::uint8_t>(c);
  count = value;
  return {};
}
// 1: the first. 2: wills in a family of their own, session records with
// their owner's identity; the key spaces read by range (Space).
constexpr std::uint32_t kFormat = 2;

enum Family : std::size_t {
  kMeta,
  kSessions,
  kSubscriptions,
  kOutbound,
  kInbound,
  kMessages,
  kRetained,
  kWills,
  kQueues,
  kFamilies
};
struct FamilyInfo {
  const char* name;
  std::uint32_t since_format;  // the format that added it
};
constexpr std::array<FamilyInfo, kFamilies> kFamilyInfo = {{
    {"default", 1},  // RocksDB's own family: the format marker
    {"sessions", 1},
    {"subscriptions", 1},
    {"outbound", 1},
    {"inbound", 1},
    {"messages", 1},
    {"retained", 1},
    {"wills", 2},
    {"queues", 2},
}};

Family family_of(Space space) {
  switch (space) {
    case Space::kQueues:
      return kQueues;
  }
  return kQueues;
}

const std::string& recover_hint() {
  static const std::string hint =
      "Nothing was changed. To start from what is readable, run sluice with --storage-recover "
      "(or storage.recover: true): what is missing is logged and counted";
  return hint;
}

class RocksDbStore final : public Store {
 public:
  // `writes`: the count the database holds (read at open).
  RocksDbStore(std::unique_ptr<rocksdb::DB> db, std::vector<rocksdb::ColumnFamilyHandle*> families,
               DurableMark mark, std::uint64_t writes)
      : db_(std::move(db)),
        families_(std::move(families)),
        mark_(std::move(mark)),
        writes_(writes) {
    mark_.set(writes_);  // from here on the mark follows this database
  }

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
    out.Put(cf(kMeta), kWritesKey, encode_count(writes_ + 1));  // atomic with the data
    rocksdb::WriteOptions options;
    options.sync = sync;
    const rocksdb::Status status = db_->Write(options, &out);
    if (!status.ok()) return Status::error("store write failed: " + status.ToString());
    ++writes_;
    // Before anyone is told it is durable: the mark never runs behind an
    // acknowledgement.
    if (sync) mark_.set(writes_);
    return {};
  }

  Status sync() override {
    const rocksdb::Status status = db_->SyncWAL();
    if (!status.ok()) return Status::error("store sync failed: " + status.ToString());
    mark_.set(writes_);
    return {};
  }

  Status scan(Space space, std::string_view from, std::string_view to,
              const std::function<bool(std::string_view, std::string_view)>& visit) override {
    rocksdb::ReadOptions options;
    const rocksdb::Slice upper(to.data(), to.size());
    if (!to.empty()) options.iterate_upper_bound = &upper;
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(options, cf(family_of(space))));
    for (it->Seek(rocksdb::Slice(from.data(), from.size())); it->Valid(); it->Next()) {
      if (!visit(std::string_view(it->key().data(), it->key().size()),
                 std::string_view(it->value().data(), it->value().size()))) {
        break;
      }
    }
    if (!it->status().ok()) return Status::error("store read failed: " + it->status().ToString());
    return {};
  }

  Status scan_back(Space space, std::string_view from, std::string_view to,
                   const std::function<bool(std::string_view, std::string_view)>& visit) override {
    rocksdb::ReadOptions options;
    const rocksdb::Slice lower(from.data(), from.size());
    options.iterate_lower_bound = &lower;
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(options, cf(family_of(space))));
    if (to.empty()) {
      it->SeekToLast();
    } else {
      // SeekForPrev lands on `to` itself when it exists: the range ends below it.
      it->SeekForPrev(rocksdb::Slice(to.data(), to.size()));
      if (it->Valid() && it->key() == rocksdb::Slice(to.data(), to.size())) it->Prev();
    }
    for (; it->Valid(); it->Prev()) {
      if (!visit(std::string_view(it->key().data(), it->key().size()),
                 std::string_view(it->value().data(), it->value().size()))) {
        break;
      }
    }
    if (!it->status().ok()) return Status::error("store read failed: " + it->status().ToString());
    return {};
  }

  Status load(LoadVisitor& visitor) override {
    Status status = each_record<SessionRecord>(kSessions, [&](std::string_view, auto&& record) {
      visitor.session(std::move(record));
      return true;
    });
    if (status.ok) {
      status = each_record<WillRecord>(kWills, [&](std::string_view key, auto&& record) {
        visitor.will(std::string(key), std::move(record));
        return true;
      });
    }
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
    return Status::error(std::string("corrupt record in ") + kFamilyInfo[family].name +
                         " (key of " + std::to_string(key.size()) + " bytes)");
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
    out.Delete(cf(kWills), op.client_id);
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
  void add(rocksdb::WriteBatch& out, const WriteBatch::PutWill& op) {
    out.Put(cf(kWills), op.client_id, codec::encode(op.record));
  }
  void add(rocksdb::WriteBatch& out, const WriteBatch::DeleteWill& op) {
    out.Delete(cf(kWills), op.client_id);
  }
  void add(rocksdb::WriteBatch& out, const WriteBatch::Put& op) {
    out.Put(cf(family_of(op.space)), op.key, op.value);
  }
  void add(rocksdb::WriteBatch& out, const WriteBatch::Erase& op) {
    out.Delete(cf(family_of(op.space)), op.key);
  }
  void add(rocksdb::WriteBatch& out, const WriteBatch::EraseRange& op) {
    out.DeleteRange(cf(family_of(op.space)), op.from, op.to);
  }

  std::unique_ptr<rocksdb::DB> db_;
  std::vector<rocksdb::ColumnFamilyHandle*> families_;
  DurableMark mark_;
  std::uint64_t writes_ = 0;  // writes made through this store, ever (the committer's thread)
};

// ---- opening ---------------------------------------------------------------------

rocksdb::ColumnFamilyOptions family_options(std::size_t family) {
  rocksdb::ColumnFamilyOptions options;
  if (family == kOutbound || family == kMessages || family == kInbound) {
    // Queues: nearly every record is deleted soon after it is written. A
    // table file that is mostly deletions is compacted early, so the
    // tombstones do not pile up on disk or slow the next start's scan.
    options.table_properties_collector_factories.push_back(
        rocksdb::NewCompactOnDeletionCollectorFactory(128 * 1024, 64 * 1024, 0.5));
  }
  return options;
}

rocksdb::Options db_options(bool existed, bool recover) {
  rocksdb::Options options;
  options.create_if_missing = !existed;
  options.error_if_exists = false;
  // The write-ahead log is what makes a write durable; bounding it makes
  // RocksDB flush memtables (and so drop old log files) before it grows
  // beyond this, whatever the traffic.
  options.max_total_wal_size = 256ull << 20;
  options.paranoid_checks = true;
  // Not track_and_verify_wals_in_manifest: in RocksDB 7.8 a SyncWAL racing
  // with the purge of an obsolete log can leave it reporting a healthy store
  // as missing a log (facebook/rocksdb#10892, fixed in 7.10). The durable
  // mark covers what it would.
  // A torn tail (a write never acknowledged, cut short by a crash) is where
  // replay stops; recovery reads on past damage to save what follows it.
  options.wal_recovery_mode = recover ? rocksdb::WALRecoveryMode::kSkipAnyCorruptedRecords
                                      : rocksdb::WALRecoveryMode::kPointInTimeRecovery;
  return options;
}

// Whether a failed open looks like damage that RocksDB's repair may mend,
// rather than a store in use by another process.
bool looks_damaged(const rocksdb::Status& status) {
  if (status.IsCorruption() || status.IsNotFound()) return true;
  if (!status.IsIOError()) return false;
  // RocksDB's lock failures: held by another process, by this one, or a LOCK
  // file that cannot be opened (permissions, a read-only disk).
  const std::string text = status.ToString();
  for (const char* lock :
       {"While lock file", "lock hold by current process", "While open a file for lock"}) {
    if (text.find(lock) != std::string::npos) return false;
  }
  return true;
}

// The families a store in `directory` has; every one must be ours.
Status existing_families(const std::string& directory, const rocksdb::Options& options,
                         std::set<std::string>& names, bool& damaged) {
  std::vector<std::string> listed;
  const rocksdb::Status status = rocksdb::DB::ListColumnFamilies(options, directory, &listed);
  if (!status.ok()) {
    damaged = looks_damaged(status);  // e.g. an unreadable or missing MANIFEST
    return Status::error("the store in " + directory + " cannot be read (" + status.ToString() +
                         ")");
  }
  for (const std::string& name : listed) {
    const bool known = std::any_of(kFamilyInfo.begin(), kFamilyInfo.end(),
                                   [&](const FamilyInfo& f) { return name == f.name; });
    if (!known) {
      return Status::error("the store in " + directory + " has a column family '" + name +
                           "' this sluice does not know (a newer format?); it was not changed");
    }
    names.insert(name);
  }
  return {};
}

struct Opened {
  std::unique_ptr<rocksdb::DB> db;
  std::vector<rocksdb::ColumnFamilyHandle*> handles;  // by Family; nullptr where missing

  void close() {
    for (auto* handle : handles)
      if (handle != nullptr) db->DestroyColumnFamilyHandle(handle);
    handles.clear();
    if (db) db->Close();
    db.reset();
  }
};

// Opens the database with the families it has (all of ours when new).
// `read_only`: RocksDB changes nothing on disk (no flush of the replayed
// log, no new files), so a store can be looked at before it is trusted.
Status open_database(const std::string& directory, bool existed, bool read_only,
                     const rocksdb::Options& options, Opened& out, bool& damaged) {
  std::set<std::string> names;
  if (existed) {
    if (Status status = existing_families(directory, options, names, damaged); !status.ok) {
      return status;
    }
  }
  std::vector<rocksdb::ColumnFamilyDescriptor> descriptors;
  std::vector<std::size_t> which;
  for (std::size_t family = 0; family < kFamilies; ++family) {
    if (existed && !names.contains(kFamilyInfo[family].name)) continue;
    descriptors.emplace_back(kFamilyInfo[family].name, family_options(family));
    which.push_back(family);
  }
  rocksdb::Options open_options = options;
  open_options.create_missing_column_families = !existed;
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::DB* raw = nullptr;
  const rocksdb::Status opened =
      read_only ? rocksdb::DB::OpenForReadOnly(open_options, directory, descriptors, &handles, &raw)
                : rocksdb::DB::Open(open_options, directory, descriptors, &handles, &raw);
  if (!opened.ok()) {
    damaged = looks_damaged(opened);
    return Status::error("the store in " + directory + " cannot be opened (" + opened.ToString() +
                         ")" + (damaged ? ". " + recover_hint() : std::string()));
  }
  out.db.reset(raw);
  out.handles.assign(kFamilies, nullptr);
  for (std::size_t i = 0; i < which.size(); ++i)
    out.handles[which[i]] = handles[i];
  return {};
}

// Adds the families the database lacks (empty).
Status add_missing_families(Opened& opened) {
  for (std::size_t family = 0; family < kFamilies; ++family) {
    if (opened.handles[family] != nullptr) continue;
    const rocksdb::Status created = opened.db->CreateColumnFamily(
        family_options(family), kFamilyInfo[family].name, &opened.handles[family]);
    if (!created.ok()) return Status::error("cannot add a column family: " + created.ToString());
  }
  return {};
}

// Format 1 -> 2: the families that came with 2, and wills moved out of
// session records (which now end with their identity).
Status migrate_from_1(Opened& opened, rocksdb::WriteBatch& batch) {
  if (Status status = add_missing_families(opened); !status.ok) return status;
  std::unique_ptr<rocksdb::Iterator> it(
      opened.db->NewIterator(rocksdb::ReadOptions(), opened.handles[kSessions]));
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    SessionRecord record;
    std::optional<WillRecord> will;
    const std::string_view value(it->value().data(), it->value().size());
    if (!codec::decode(value, record, &will)) {
      return Status::error("corrupt session record while migrating");
    }
    batch.Put(opened.handles[kSessions], it->key(), codec::encode(record));
    if (will) batch.Put(opened.handles[kWills], it->key(), codec::encode(*will));
  }
  if (!it->status().ok()) return Status::error("store read failed: " + it->status().ToString());
  return {};
}

// The format the marker says; 0 for a new store (no marker yet).
Status read_format(const std::string& directory, bool existed, Opened& opened,
                   std::uint32_t& format) {
  std::string text;
  const rocksdb::Status read =
      opened.db->Get(rocksdb::ReadOptions(), opened.handles[kMeta], kFormatKey, &text);
  format = 0;
  if (read.IsNotFound() && !existed) return {};
  if (read.IsNotFound()) {
    return Status::error("the store in " + directory +
                         " is not a Sluice store (no format marker); it was not changed");
  }
  if (!read.ok()) {
    return Status::error("the store in " + directory + " cannot be read (" + read.ToString() +
                         "); it was not changed");
  }
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), format);
  if (error != std::errc() || end != text.data() + text.size()) format = 0;
  if (format == 0 || format > kFormat) {
    return Status::error("the store in " + directory + " has format " + text +
                         ", this sluice reads formats 1 to " + std::to_string(kFormat) +
                         "; it was not changed");
  }
  return {};
}

// A family its format has but the database lacks: the MANIFEST lost it.
Status check_families(const std::string& directory, const Opened& opened, std::uint32_t format) {
  for (std::size_t family = 0; family < kFamilies; ++family) {
    if (opened.handles[family] == nullptr && kFamilyInfo[family].since_format <= format) {
      return Status::error("the store in " + directory + " has lost its column family '" +
                           kFamilyInfo[family].name + "' (its MANIFEST is damaged). " +
                           recover_hint());
    }
  }
  return {};
}

// Opens the database and reads its format, checking that nothing its format
// promises is missing. `damaged` says whether a failure looks like damage
// (which RocksDB's repair may mend) rather than, say, a lock held elsewhere.
// After a repair (`repaired`), a family that had no data is simply missing:
// it is made anew, and the durable mark tells what was lost.
Status open_checked(const std::string& directory, bool existed, bool read_only, bool repaired,
                    const rocksdb::Options& options, Opened& opened, std::uint32_t& format,
                    bool& damaged) {
  damaged = false;
  Status status = open_database(directory, existed, read_only, options, opened, damaged);
  if (status.ok) status = read_format(directory, existed, opened, format);
  if (status.ok && existed && !repaired) {
    status = check_families(directory, opened, format);
    damaged = !status.ok;
  }
  if (status.ok && repaired) status = add_missing_families(opened);
  if (!status.ok) opened.close();
  return status;
}

// Writes the format marker of a new store, or migrates an older format.
Status settle_format(Opened& opened, std::uint32_t format) {
  if (format == kFormat) return {};
  rocksdb::WriteBatch batch;
  if (format == 1) {
    if (Status status = migrate_from_1(opened, batch); !status.ok) return status;
  }
  // The marker changes in the same write as the data it describes.
  batch.Put(opened.handles[kMeta], kFormatKey, std::to_string(kFormat));
  rocksdb::WriteOptions sync;
  sync.sync = true;
  const rocksdb::Status written = opened.db->Write(sync, &batch);
  if (!written.ok()) return Status::error("cannot write the store format: " + written.ToString());
  return {};
}

// Compares the database with the durable mark: a database behind it lost
// acknowledged writes.
Status check_durable_mark(const std::string& directory, const OpenOptions& options, rocksdb::DB& db,
                          rocksdb::ColumnFamilyHandle* meta, DurableMark& mark,
                          OpenReport& report) {
  const std::optional<std::uint64_t> expected = mark.read();
  std::optional<std::uint64_t> count;
  if (Status status = read_count(db, meta, count); !status.ok) return status;
  if (!expected) {  // no mark: a store from before marks, or the file was removed
    report.unchecked = true;
    return {};
  }
  // A mark and no count: the writes that set the count are all gone.
  const std::uint64_t found = count.value_or(0);
  if (found >= *expected) return {};
  const std::uint64_t lost = *expected - found;
  if (!options.recover) {
    return Status::error(
        "the store in " + directory + " lost writes it had acknowledged: it holds " +
        std::to_string(found) + " writes, but " + std::to_string(*expected) +
        " were durable before the last stop (" + std::to_string(lost) +
        " missing); its write-ahead log or MANIFEST is damaged or cut short. " + recover_hint());
  }
  report.lost_writes = lost;
  return {};
}

// RocksDB's own repair: a new MANIFEST from the table files and logs.
Status repair(const std::string& directory, const rocksdb::Options& options) {
  std::vector<rocksdb::ColumnFamilyDescriptor> all;
  for (std::size_t family = 0; family < kFamilies; ++family)
    all.emplace_back(kFamilyInfo[family].name, family_options(family));
  const rocksdb::Status repaired = rocksdb::RepairDB(directory, options, all);
  if (!repaired.ok()) return Status::error("repair failed (" + repaired.ToString() + ")");
  return {};
}

// Whether `directory` holds (what is left of) a store: any file a store
// has, not only CURRENT, whose loss must not make it look new.
bool holds_a_store(const std::string& directory) {
  // RocksDB's own names: NNNNNN.log, NNNNNN.sst, MANIFEST-NNNNNN.
  auto numbered = [](std::string_view name, std::string_view suffix) {
    if (!name.ends_with(suffix) || name.size() == suffix.size()) return false;
    name.remove_suffix(suffix.size());
    return std::all_of(name.begin(), name.end(), [](char c) { return c >= '0' && c <= '9'; });
  };
  std::error_code error;
  for (const auto& entry : std::filesystem::directory_iterator(directory, error)) {
    const std::string name = entry.path().filename().string();
    if (name == "CURRENT" || name == DurableMark::kFileName || name.starts_with("MANIFEST-") ||
        numbered(name, ".sst") || numbered(name, ".log")) {
      return true;
    }
  }
  return false;
}

// Whether another process has the store open: RocksDB holds a POSIX lock on
// its LOCK file while it does. Looked at first, so that a store in use is
// not mistaken for a damaged one (its log is ahead of what a reader sees).
// Only for a store this process does not hold open itself: closing any
// descriptor of LOCK would drop this process's own lock on it.
bool in_use(const std::string& directory) {
  const std::string path = directory + "/LOCK";
  const int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) return false;
  struct flock lock {};
  lock.l_type = F_WRLCK;
  lock.l_whence = SEEK_SET;
  const bool taken = ::fcntl(fd, F_GETLK, &lock) == 0 && lock.l_type != F_UNLCK;
  ::close(fd);
  return taken;
}

// Looks at an existing store without changing it: whether it opens, has
// what its format promises, and holds every write it made durable.
Status inspect(const std::string& directory, const OpenOptions& options,
               const rocksdb::Options& rocks, bool& damaged) {
  Opened opened;
  std::uint32_t format = 0;
  Status status = open_checked(directory, true, true, false, rocks, opened, format, damaged);
  if (!status.ok) return status;
  DurableMark mark(directory);
  OpenReport ignored;
  status = check_durable_mark(directory, options, *opened.db, opened.handles[kMeta], mark, ignored);
  opened.close();
  return status;
}

}  // namespace

Status open_rocksdb_store(const std::string& directory, const OpenOptions& options,
                          std::unique_ptr<Store>& out, OpenReport& report) {
  const bool existed = holds_a_store(directory);
  if (existed && !std::filesystem::exists(std::filesystem::path(directory) / "CURRENT") &&
      !options.recover) {
    // Without CURRENT RocksDB would start an empty store over the old files.
    return Status::error("the store in " + directory +
                         " has lost its CURRENT file (it names the MANIFEST). " + recover_hint());
  }
  const rocksdb::Options rocks = db_options(existed, options.recover);
  bool damaged = false;
  if (existed && in_use(directory)) {
    return Status::error("the store in " + directory +
                         " is in use by another process (its LOCK is held); it was not changed");
  }
  if (existed) {
    // Read-only first: a store found wanting is refused exactly as it was
    // (a read-write open would already flush its log and drop files).
    Status status = inspect(directory, options, rocks, damaged);
    if (!status.ok && !options.recover) return status;
    if (!status.ok && damaged) {
      if (Status repaired = repair(directory, rocks); !repaired.ok) {
        return Status::error(status.message + "; " + repaired.message);
      }
      report.repaired = true;
    }
  }
  Opened opened;
  std::uint32_t format = 0;
  Status status =
      open_checked(directory, existed, false, report.repaired, rocks, opened, format, damaged);
  if (!status.ok) return status;
  report.format_found = format;
  DurableMark mark(directory);
  if (existed) {
    status =
        check_durable_mark(directory, options, *opened.db, opened.handles[kMeta], mark, report);
  }
  if (status.ok) status = settle_format(opened, format);
  if (status.ok) status = mark.open();
  std::optional<std::uint64_t> writes;
  if (status.ok) status = read_count(*opened.db, opened.handles[kMeta], writes);
  if (!status.ok) {
    opened.close();
    return status;
  }
  out = std::make_unique<RocksDbStore>(std::move(opened.db), std::move(opened.handles),
                                       std::move(mark), writes.value_or(0));
  return {};
}

}  // namespace sluice::store
