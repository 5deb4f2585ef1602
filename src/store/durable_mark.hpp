// How far a store is known to be durable, kept in a file of its own beside
// the database (SLUICE-DURABLE): the database's last sequence number after
// each write or sync that made data durable. At open, a database whose last
// sequence number is below the mark has lost writes that were acknowledged.
//
// The file is overwritten in place with one small fixed-size record (with a
// checksum, so a torn record reads as "unknown", never as a wrong number) and
// fsynced at most once a second: kill -9 cannot lose a write the kernel took,
// and after a power loss a stale mark only checks less, never wrongly.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

#include "store/store.hpp"

namespace sluice::store {

class DurableMark {
 public:
  explicit DurableMark(const std::string& directory);
  ~DurableMark();  // syncs and closes
  DurableMark(DurableMark&& other) noexcept;
  DurableMark& operator=(DurableMark&&) = delete;
  DurableMark(const DurableMark&) = delete;

  // The recorded sequence number; nullopt when there is no file or its
  // record is not whole.
  std::optional<std::uint64_t> read() const;
  // Opens (making if needed) the file for set().
  Status open();
  void set(std::uint64_t sequence);

  static constexpr const char* kFileName = "SLUICE-DURABLE";

 private:
  static constexpr auto kSyncInterval = std::chrono::seconds(1);
  std::string path_;
  int fd_ = -1;
  bool warned_ = false;
  std::chrono::steady_clock::time_point last_sync_{};
};

}  // namespace sluice::store
