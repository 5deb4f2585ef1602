// The mark file: one line "sluice-durable SEQUENCE CHECKSUM", in hex.
#include "store/durable_mark.hpp"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstring>

namespace sluice::store {
namespace {

constexpr std::size_t kRecordBytes = 42;  // "sluice-durable " + 16 + " " + 8 + "\n", and a NUL

std::uint32_t checksum(std::uint64_t sequence) {
  // FNV-1a over the number's bytes: enough to tell a whole record from a torn one.
  std::uint32_t hash = 2166136261u;
  for (int i = 0; i < 8; ++i) {
    hash ^= static_cast<std::uint8_t>(sequence >> (8 * i));
    hash *= 16777619u;
  }
  return hash;
}

}  // namespace

DurableMark::DurableMark(const std::string& directory) : path_(directory + "/" + kFileName) {}

DurableMark::DurableMark(DurableMark&& other) noexcept
    : path_(std::move(other.path_)), fd_(other.fd_), warned_(other.warned_) {
  other.fd_ = -1;
}

DurableMark::~DurableMark() {
  if (fd_ < 0) return;
  ::fdatasync(fd_);
  ::close(fd_);
}

std::optional<std::uint64_t> DurableMark::read() const {
  std::FILE* file = std::fopen(path_.c_str(), "r");
  if (file == nullptr) return std::nullopt;
  std::uint64_t sequence = 0;
  std::uint32_t sum = 0;
  const int fields = std::fscanf(file, "sluice-durable %16" SCNx64 " %8" SCNx32, &sequence, &sum);
  std::fclose(file);
  if (fields != 2 || sum != checksum(sequence)) return std::nullopt;
  return sequence;
}

Status DurableMark::open() {
  fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
  if (fd_ < 0) return Status::error("cannot open " + path_ + ": " + std::strerror(errno));
  // The file's name is durable too, once: a power loss must not lose the mark.
  const std::string directory = path_.substr(0, path_.rfind('/'));
  const int dir = ::open(directory.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir >= 0) {
    ::fsync(dir);
    ::close(dir);
  }
  return {};
}

void DurableMark::set(std::uint64_t sequence) {
  if (fd_ < 0) return;
  std::array<char, kRecordBytes> record{};
  const int length =
      std::snprintf(record.data(), record.size(), "sluice-durable %016" PRIx64 " %08" PRIx32 "\n",
                    sequence, checksum(sequence));
  // One write of the whole record at the start: it never leaves a mixture
  // of an old and a new number that reads as whole (the checksum says so).
  if (::pwrite(fd_, record.data(), static_cast<std::size_t>(length), 0) != length && !warned_) {
    // The data is unaffected; only the check at the next start is weaker.
    spdlog::warn("event=durable_mark_failed file={} error=\"{}\"", path_, std::strerror(errno));
    warned_ = true;
  }
  // On disk about once a second: after a power loss (when logs are cut short
  // most) the mark is at most that far behind, at the cost of one fsync a
  // second on the committer's thread.
  const auto now = std::chrono::steady_clock::now();
  if (now - last_sync_ >= kSyncInterval) {
    ::fdatasync(fd_);
    last_sync_ = now;
  }
}

}  // namespace sluice::store
