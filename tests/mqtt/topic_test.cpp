// Topic name and filter validation, shared-subscription parsing, and matching.
#include "mqtt/topic.hpp"

#include <gtest/gtest.h>

namespace sluice::mqtt {
namespace {

TEST(TopicName, AcceptsOrdinaryNames) {
  for (const char* name :
       {"a", "a/b/c", "/", "//", "/leading", "trailing/", "$SYS/broker", "a b"}) {
    EXPECT_TRUE(check_topic_name(name).ok()) << name;
  }
}

TEST(TopicName, MQTT_3_3_2_2_RefusesWildcards) {
  for (const char* name : {"+", "#", "a/+", "a/#", "a+b", "a#"}) {
    EXPECT_EQ(check_topic_name(name).code, ReasonCode::kTopicNameInvalid) << name;
  }
}

TEST(TopicName, MQTT_4_7_3_1_RefusesEmpty) {
  EXPECT_FALSE(check_topic_name("").ok());
}

TEST(TopicFilter, AcceptsValidFilters) {
  for (const char* filter : {"#", "+", "a/#", "a/+/c", "+/+", "/+", "+/", "a//b", "$SYS/#",
                             "$share/g/a/#", "$share/group-1/+", "$sharex/a", "$share"}) {
    EXPECT_TRUE(check_topic_filter(filter).ok()) << filter;
  }
}

TEST(TopicFilter, MQTT_4_7_1_1_HashMustBeLastAndAlone) {
  for (const char* filter : {"#/a", "a#", "a/#/b", "a/b#", "##"}) {
    const DecodeError error = check_topic_filter(filter);
    EXPECT_STREQ(error.rule, "MQTT-4.7.1-1") << filter;
  }
}

TEST(TopicFilter, MQTT_4_7_1_2_PlusMustFillItsLevel) {
  for (const char* filter : {"a+", "+a", "a/+b", "a/b+/c", "++"}) {
    const DecodeError error = check_topic_filter(filter);
    EXPECT_STREQ(error.rule, "MQTT-4.7.1-2") << filter;
  }
}

TEST(TopicFilter, MQTT_4_8_2_SharedSubscriptionSyntax) {
  EXPECT_STREQ(check_topic_filter("$share//a").rule, "MQTT-4.8.2-1");
  EXPECT_STREQ(check_topic_filter("$share/g").rule, "MQTT-4.8.2-2");
  EXPECT_STREQ(check_topic_filter("$share/g/").rule, "MQTT-4.8.2-2");
  EXPECT_STREQ(check_topic_filter("$share/g#/a").rule, "MQTT-4.8.2-2");
  EXPECT_STREQ(check_topic_filter("$share/+/a").rule, "MQTT-4.8.2-2");
}

TEST(SharedFilter, SplitsGroupAndFilter) {
  const auto shared = parse_shared_filter("$share/workers/jobs/+/new");
  ASSERT_TRUE(shared.has_value());
  EXPECT_EQ(shared->group, "workers");
  EXPECT_EQ(shared->filter, "jobs/+/new");
  EXPECT_FALSE(parse_shared_filter("jobs/#").has_value());
  EXPECT_FALSE(parse_shared_filter("$SYS/#").has_value());
}

TEST(TopicLevels, CountsLevels) {
  EXPECT_EQ(topic_levels("a"), 1u);
  EXPECT_EQ(topic_levels("a/b/c"), 3u);
  EXPECT_EQ(topic_levels("/"), 2u);
}

struct MatchCase {
  const char* filter;
  const char* topic;
  bool matches;
};

void PrintTo(const MatchCase& c, std::ostream* os) {
  *os << '"' << c.filter << "\" vs \"" << c.topic << (c.matches ? "\" match" : "\" differ");
}

class Matching : public ::testing::TestWithParam<MatchCase> {};

TEST_P(Matching, FollowsSection4_7) {
  const auto& [filter, topic, matches] = GetParam();
  EXPECT_EQ(topic_matches(filter, topic), matches) << filter << " vs " << topic;
}

INSTANTIATE_TEST_SUITE_P(
    Table, Matching,
    ::testing::Values(
        // exact
        MatchCase{"a/b", "a/b", true}, MatchCase{"a/b", "a/c", false},
        MatchCase{"a/b", "a/b/c", false}, MatchCase{"a/b/c", "a/b", false},
        MatchCase{"a", "A", false}, MatchCase{"/a", "a", false}, MatchCase{"a/", "a", false},
        // '#': this level and all below, including the parent [4.7.1.2]
        MatchCase{"#", "a", true}, MatchCase{"#", "a/b/c", true}, MatchCase{"#", "/", true},
        MatchCase{"sport/#", "sport", true}, MatchCase{"sport/#", "sport/tennis/player1", true},
        MatchCase{"sport/#", "sport/", true}, MatchCase{"sport/#", "sports", false},
        MatchCase{"a/b/#", "a", false},
        // '+': exactly one level, which may be empty [4.7.1.3]
        MatchCase{"+", "a", true}, MatchCase{"+", "a/b", false}, MatchCase{"+", "/", false},
        MatchCase{"+/+", "/finance", true}, MatchCase{"/+", "/finance", true},
        MatchCase{"sport/+", "sport", false}, MatchCase{"sport/+", "sport/", true},
        MatchCase{"a/+/c", "a/b/c", true}, MatchCase{"a/+/c", "a/b/d", false},
        MatchCase{"a/+/#", "a/b", true}, MatchCase{"+/b/#", "x/b/c/d", true},
        // [MQTT-4.7.2-1] wildcards at the first level do not match '$' topics
        MatchCase{"#", "$SYS/broker", false}, MatchCase{"+/broker", "$SYS/broker", false},
        MatchCase{"$SYS/#", "$SYS/broker", true}, MatchCase{"$SYS/+", "$SYS/broker", true},
        MatchCase{"a/#", "a/$b", true}, MatchCase{"+/+", "a/$b", true}));

}  // namespace
}  // namespace sluice::mqtt
