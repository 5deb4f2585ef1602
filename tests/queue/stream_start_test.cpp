#include "queue/stream_start.hpp"

#include <gtest/gtest.h>

namespace sluice::queue {
namespace {

using Kind = StreamStart::Kind;

TEST(StreamStart, NamedPlaces) {
  EXPECT_EQ(parse_stream_start("earliest", 0)->kind, Kind::kEarliest);
  EXPECT_EQ(parse_stream_start("latest", 0)->kind, Kind::kLatest);
  EXPECT_EQ(parse_stream_start("next", 0)->kind, Kind::kNext);
  EXPECT_EQ(parse_stream_start("committed", 0)->kind, Kind::kCommitted);
}

TEST(StreamStart, OffsetsAndTimes) {
  const auto offset = parse_stream_start("offset=42", 0);
  ASSERT_TRUE(offset);
  EXPECT_EQ(offset->kind, Kind::kOffset);
  EXPECT_EQ(offset->offset, 42u);

  const auto at = parse_stream_start("timestamp=1700000000000", 0);
  ASSERT_TRUE(at);
  EXPECT_EQ(at->kind, Kind::kTimestamp);
  EXPECT_EQ(at->timestamp_ms, 1'700'000'000'000);

  const std::int64_t now = 1'000'000'000;
  EXPECT_EQ(parse_stream_start("ago=250ms", now)->timestamp_ms, now - 250);
  EXPECT_EQ(parse_stream_start("ago=30s", now)->timestamp_ms, now - 30'000);
  EXPECT_EQ(parse_stream_start("ago=5m", now)->timestamp_ms, now - 300'000);
  EXPECT_EQ(parse_stream_start("ago=2h", now)->timestamp_ms, now - 7'200'000);
  EXPECT_EQ(parse_stream_start("ago=1d", now)->timestamp_ms, now - 86'400'000);
}

TEST(StreamStart, RefusesWhatBrokersDisagreeOnOrCannotBeRead) {
  for (const char* text : {"42", "", "first", "offset=", "offset=-1", "offset=1x",
                           "timestamp=", "timestamp=-5", "ago=5", "ago=m", "ago=5w", "ago=-5s",
                           "Earliest", "offset=99999999999999999999", "ago=9999999999999999999d"}) {
    EXPECT_FALSE(parse_stream_start(text, 0)) << text;
  }
}

}  // namespace
}  // namespace sluice::queue
