#include "queue/log_codec.hpp"

#include <gtest/gtest.h>

#include "config/config_loader.hpp"
#include "queue/queue_service.hpp"

namespace sluice::queue {
namespace {

TEST(QueueLogCodec, AnEntryReadsBackAsWritten) {
  LogEntry entry;
  entry.timestamp_ms = 1'700'000'000'123;
  entry.expires_at_ms = 1'700'000'060'000;
  entry.subtopic = "eu/7";
  entry.key = "customer-42";
  entry.properties = {0x03, 0x01, 0x02};
  entry.payload = {0x00, 0xFF, 0x10};
  const auto back = decode_entry(encode_entry(entry));
  ASSERT_TRUE(back);
  EXPECT_EQ(back->timestamp_ms, entry.timestamp_ms);
  EXPECT_EQ(back->expires_at_ms, entry.expires_at_ms);
  EXPECT_EQ(back->subtopic, entry.subtopic);
  EXPECT_EQ(back->key, entry.key);
  EXPECT_EQ(back->properties, entry.properties);
  EXPECT_EQ(back->payload, entry.payload);

  LogEntry bare;  // no subtopic is not an empty one
  EXPECT_FALSE(decode_entry(encode_entry(bare))->subtopic);
  bare.subtopic = "";
  EXPECT_EQ(decode_entry(encode_entry(bare))->subtopic, "");
}

TEST(QueueLogCodec, DamagedEntriesAreRefused) {
  LogEntry entry;
  entry.payload = {1, 2, 3};
  const std::string good = encode_entry(entry);
  EXPECT_FALSE(decode_entry(good.substr(0, good.size() - 1)));
  EXPECT_FALSE(decode_entry(good + "x"));
  EXPECT_FALSE(decode_entry(""));
  std::string other_version = good;
  other_version[0] = 9;
  EXPECT_FALSE(decode_entry(other_version));
}

TEST(QueueLogCodec, KeysSortAsTheLayerReadsThem) {
  // Offsets in numeric order, partitions apart, queues apart (a name that is
  // a prefix of another does not mix with it).
  EXPECT_LT(keys::entry("q", 0, 255), keys::entry("q", 0, 256));
  EXPECT_LT(keys::entry("q", 0, 1ull << 40), keys::entry("q", 1, 0));
  EXPECT_LT(keys::entry("q", 0, ~0ull), keys::entries_end("q", 0));
  EXPECT_LT(keys::entries_end("q", 0), keys::entry("q", 1, 0));
  EXPECT_LT(keys::entry("q", 7, ~0ull), keys::entry("q.dlq", 0, 0));
  EXPECT_EQ(keys::offset_of(keys::settled("q", "g", 3, 12345)), 12345u);
  EXPECT_EQ(keys::last_name(keys::group("q", "workers"), keys::groups_prefix("q").size()),
            "workers");
}

TEST(QueueLogCodec, APrefixEndIsAboveEveryKeyWithThePrefix) {
  // Partition 255 ends the prefix with 0xFF: the end must still be above it.
  const std::string prefix = keys::settled_prefix("q", "g", 255);
  const std::string end = keys::prefix_end(prefix);
  EXPECT_LT(keys::settled("q", "g", 255, ~0ull), end);
  EXPECT_LE(end, keys::settled("q", "g", 256, 0));
}

TEST(QueueLogCodec, QueueRecordsOfEachFormReadBack) {
  config::QueueConfig queue{"jobs", config::QueueKind::kStream, {}, {}, {}};
  queue.options.partitions = 4;
  queue.options.dead_letter = "failed";
  queue.options.max_deliveries = 2;
  // Without options: the form written before the admin API could make queues.
  auto plain = decode_queue_record(queue_record(queue, false));
  ASSERT_TRUE(plain);
  EXPECT_EQ(plain->partitions, 4u);
  EXPECT_TRUE(plain->stream);
  EXPECT_FALSE(plain->no_dead_letters);
  EXPECT_EQ(plain->dead_letter, "failed");
  EXPECT_FALSE(plain->options);
  auto full = decode_queue_record(queue_record(queue, true));
  ASSERT_TRUE(full);
  EXPECT_EQ(full->dead_letter, "failed");
  ASSERT_TRUE(full->options);
  config::QueueOptions read;
  ASSERT_FALSE(config::parse_queue_options(*full->options, read, "record"));
  EXPECT_EQ(read, queue.options);
  // The first records held the partition count alone.
  auto oldest = decode_queue_record(encode_u32(2));
  ASSERT_TRUE(oldest);
  EXPECT_EQ(oldest->partitions, 2u);
  EXPECT_FALSE(oldest->stream);
  // A damaged one is refused, not half read.
  std::string cut = queue_record(queue, true).substr(0, 7);
  EXPECT_FALSE(decode_queue_record(cut));
  EXPECT_FALSE(decode_queue_record("ab"));
}

TEST(QueueLogCodec, EveryKeyOfAQueueIsUnderOneOfItsPrefixes) {
  const auto prefixes = keys::every_prefix("q");
  const auto covered = [&](const std::string& key) {
    for (const std::string& prefix : prefixes)
      if (key.starts_with(prefix)) return true;
    return false;
  };
  for (const std::string& key :
       {keys::queue("q"), keys::entry("q", 1, 2), keys::log_start("q", 0), keys::group("q", "g"),
        keys::floor("q", "g", 0), keys::settled("q", "g", 0, 5), keys::failures("q", "g", 0, 5),
        keys::dedup("q", "id")})
    EXPECT_TRUE(covered(key)) << key;
  // And nothing of a queue whose name starts the same.
  for (const std::string& key : {keys::queue("q2"), keys::entry("q.dlq", 0, 0)})
    EXPECT_FALSE(covered(key)) << key;
}

}  // namespace
}  // namespace sluice::queue
