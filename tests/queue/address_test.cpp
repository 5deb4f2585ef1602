#include "queue/address.hpp"

#include <gtest/gtest.h>

namespace sluice::queue {
namespace {

TEST(QueueAddress, NamesSubtopicsAndVerbs) {
  auto bare = parse_address("$queue/orders");
  ASSERT_TRUE(bare);
  EXPECT_EQ(bare->name, "orders");
  EXPECT_FALSE(bare->subtopic);
  EXPECT_TRUE(bare->verb.empty());

  auto deep = parse_address("$queue/orders/eu/7");
  ASSERT_TRUE(deep);
  EXPECT_EQ(deep->name, "orders");
  EXPECT_EQ(deep->subtopic, "eu/7");

  auto empty_level = parse_address("$queue/orders/");
  ASSERT_TRUE(empty_level);
  EXPECT_EQ(empty_level->subtopic, "");  // a subtopic of one empty level

  auto verb = parse_address("$queue/orders/$ack");
  ASSERT_TRUE(verb);
  EXPECT_EQ(verb->verb, "$ack");
  EXPECT_FALSE(verb->subtopic);
  EXPECT_FALSE(verb->stream);
}

TEST(QueueAddress, StreamsAreTheirOwnKind) {
  auto stream = parse_address("$stream/clicks/eu");
  ASSERT_TRUE(stream);
  EXPECT_TRUE(stream->stream);
  EXPECT_EQ(stream->name, "clicks");
  EXPECT_EQ(stream->subtopic, "eu");

  auto commit = parse_address("$stream/clicks/$commit");
  ASSERT_TRUE(commit);
  EXPECT_TRUE(commit->stream);
  EXPECT_EQ(commit->verb, "$commit");
}

TEST(QueueAddress, RefusesWhatIsNotAQueueAddress) {
  for (const char* topic : {"$queue/", "$queue", "queue/orders", "$queue/a b", "$queue/+/x",
                            "$queue/#", "$queue/orders/$ack/more", "$stream/", "$stream/a b",
                            "$streams/orders", "$stream/x/$commit/y"}) {
    EXPECT_FALSE(parse_address(topic)) << topic;
  }
  EXPECT_TRUE(valid_queue_name(std::string(200, 'a')));
  EXPECT_FALSE(valid_queue_name(std::string(201, 'a')));
  EXPECT_TRUE(valid_queue_name("A-z_0.9"));
}

}  // namespace
}  // namespace sluice::queue
