// What a publisher's acknowledgement waits for when its message went to
// other nodes: every answer, and the verdict of all of them.
#include "broker/remote_acks.hpp"

#include <gtest/gtest.h>

namespace sluice::broker {
namespace {

TEST(RemoteAcks, AnswersOnceEveryNodeAndTheLocalWriteDid) {
  auto acks = std::make_shared<RemoteAcks>();
  std::weak_ptr<RemoteAcks> watch = acks;
  acks->expect();  // node A
  acks->expect();  // node B
  std::optional<bool> verdict;
  acks->when_done([&](bool ok) { verdict = ok; });
  acks->expect();  // the local write
  acks.reset();    // only the pending answers keep it now
  ASSERT_FALSE(watch.expired());
  Delivery delivery;
  watch.lock()->on_settled(delivery, mqtt::ReasonCode::kSuccess);
  watch.lock()->answer(true);
  EXPECT_FALSE(verdict);
  watch.lock()->on_settled(delivery, mqtt::ReasonCode::kSuccess);
  EXPECT_EQ(verdict, true);
  EXPECT_TRUE(watch.expired());  // gone with the last answer
}

TEST(RemoteAcks, OneRefusalOrFailedWriteFailsTheWhole) {
  for (const bool refuse_remote : {true, false}) {
    auto acks = std::make_shared<RemoteAcks>();
    acks->expect();
    acks->expect();
    std::optional<bool> verdict;
    acks->when_done([&](bool ok) { verdict = ok; });
    Delivery delivery;
    acks->on_settled(delivery,
                     refuse_remote ? mqtt::ReasonCode::kQuotaExceeded : mqtt::ReasonCode::kSuccess);
    acks->answer(refuse_remote);  // the local write failed when the remote did not
    EXPECT_EQ(verdict, false);
  }
}

TEST(RemoteAcks, WhenDoneAfterEveryAnswerRunsAtOnce) {
  auto acks = std::make_shared<RemoteAcks>();
  acks->expect();
  acks->answer(true);
  bool ran = false;
  acks->when_done([&](bool ok) { ran = ok; });
  EXPECT_TRUE(ran);
}

}  // namespace
}  // namespace sluice::broker
