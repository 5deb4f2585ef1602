// W3C traceparent, read and written (broker/trace.hpp), and which publishes
// start a trace.
#include "broker/trace.hpp"

#include <gtest/gtest.h>

namespace sluice::broker {
namespace {

constexpr const char* kValid = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

TEST(Traceparent, AValidOneReadsBackAsWritten) {
  const auto context = parse_traceparent(kValid);
  ASSERT_TRUE(context);
  EXPECT_TRUE(context->sampled);
  EXPECT_EQ(context->trace_id[0], 0x4b);
  EXPECT_EQ(context->span_id[7], 0xb7);
  EXPECT_EQ(format_traceparent(*context), kValid);
  const auto unsampled =
      parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00");
  ASSERT_TRUE(unsampled);
  EXPECT_FALSE(unsampled->sampled);
}

TEST(Traceparent, WhatIsNotOneIsRefused) {
  for (const char* bad : {
           "",
           "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0",     // short
           "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",  // 00 has no more
           "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",    // uppercase
           "00-00000000000000000000000000000000-00f067aa0ba902b7-01",    // zero trace id
           "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",    // zero parent id
           "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",    // version ff
           "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",    // separator
           "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",    // not hex
       }) {
    EXPECT_FALSE(parse_traceparent(bad)) << bad;
  }
  // A later version is read as 00, its extra fields ignored.
  EXPECT_TRUE(parse_traceparent("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra"));
}

class FixedSink final : public SpanSink {
 public:
  explicit FixedSink(double ratio) : ratio_(ratio) {}
  double sample_ratio() const override { return ratio_; }
  void record(Span&&) override {}

 private:
  double ratio_;
};

mqtt::Properties with_user(std::vector<mqtt::UserProperty> users) {
  mqtt::Properties properties;
  properties.user_properties = std::move(users);
  return properties;
}

TEST(PublishTrace, ASampledParentIsFollowedAndItsTraceparentTakenOut) {
  FixedSink never(0);
  auto properties = with_user({{"a", "1"}, {"traceparent", kValid}, {"b", "2"}});
  const auto trace = start_publish_trace(never, properties, "t", "c", 1);
  ASSERT_TRUE(trace);
  EXPECT_EQ(format_traceparent({trace->receive.trace_id, *trace->receive.parent, true}), kValid);
  EXPECT_NE(trace->receive.span_id, *trace->receive.parent);
  EXPECT_EQ(trace->message->receive_span, trace->receive.span_id);
  EXPECT_EQ(properties.user_properties, (std::vector<mqtt::UserProperty>{{"a", "1"}, {"b", "2"}}));
}

TEST(PublishTrace, AnUnsampledParentOrNoPickTracesNothingAndChangesNothing) {
  FixedSink always(1);
  const std::string unsampled = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";
  auto properties = with_user({{"traceparent", unsampled}});
  EXPECT_FALSE(start_publish_trace(always, properties, "t", "c", 1));
  EXPECT_EQ(properties.user_properties.size(), 1u);

  FixedSink never(0);
  auto none = with_user({});
  EXPECT_FALSE(start_publish_trace(never, none, "t", "c", 1));
  // Picked by the sampler: a root, in a trace of its own.
  const auto root = start_publish_trace(always, none, "t", "c", 1);
  ASSERT_TRUE(root);
  EXPECT_FALSE(root->receive.parent);
  // A traceparent that is not one: as if there were none, and replaced.
  auto broken = with_user({{"traceparent", "nonsense"}});
  const auto replaced = start_publish_trace(always, broken, "t", "c", 1);
  ASSERT_TRUE(replaced);
  EXPECT_TRUE(broken.user_properties.empty());
}

}  // namespace
}  // namespace sluice::broker
