// ACL files: who may publish and subscribe to what.
#include "auth/acl_file.hpp"

#include <gtest/gtest.h>

namespace sluice::auth {
namespace {

AclFile parse(std::string_view text) {
  std::string error;
  auto file = AclFile::parse(text, "acl", error);
  EXPECT_TRUE(file) << error;
  return file ? std::move(*file) : AclFile();
}

constexpr const char* kAcl = R"(# anonymous clients
topic read public/#

user alice
topic readwrite alice/#
topic deny alice/secret/#
topic write shared/in

user bob
topic bob/#

pattern readwrite devices/%c/#
pattern read users/%u/inbox
)";

TEST(FilterCovers, AWiderFilterCoversANarrowerOne) {
  EXPECT_TRUE(filter_covers("a/#", "a/#"));
  EXPECT_TRUE(filter_covers("a/#", "a"));
  EXPECT_TRUE(filter_covers("a/#", "a/+/c"));
  EXPECT_TRUE(filter_covers("a/+/c", "a/b/c"));
  EXPECT_TRUE(filter_covers("a/+/c", "a/+/c"));
  EXPECT_TRUE(filter_covers("#", "x/y"));
  EXPECT_FALSE(filter_covers("a/+/c", "a/#"));
  EXPECT_FALSE(filter_covers("a/b/c", "a/+/c"));
  EXPECT_FALSE(filter_covers("a/b", "a/b/c"));
  EXPECT_FALSE(filter_covers("a/b/c", "a/b"));
  EXPECT_FALSE(filter_covers("#", "$SYS/x"));
  EXPECT_TRUE(filter_covers("$SYS/#", "$SYS/x"));
}

TEST(FiltersOverlap, WhenSomeTopicMatchesBoth) {
  EXPECT_TRUE(filters_overlap("alice/+/key", "alice/secret/#"));
  EXPECT_TRUE(filters_overlap("a/#", "a"));
  EXPECT_TRUE(filters_overlap("+/b", "a/+"));
  EXPECT_FALSE(filters_overlap("a/b", "a/c"));
  EXPECT_FALSE(filters_overlap("a/b", "a/b/c"));
  EXPECT_FALSE(filters_overlap("#", "$SYS/x"));
}

TEST(AclFile, AnonymousClientsGetTheRulesBeforeAnyUserLine) {
  const AclFile acl = parse(kAcl);
  const ClientAcl anonymous = acl.for_client("c1", "");
  EXPECT_TRUE(anonymous.may_subscribe("public/news"));
  EXPECT_TRUE(anonymous.may_subscribe("public/#"));
  EXPECT_FALSE(anonymous.may_publish("public/news"));  // read only
  EXPECT_FALSE(anonymous.may_subscribe("#"));
  EXPECT_FALSE(anonymous.may_subscribe("alice/x"));
}

TEST(AclFile, UserRulesGrantAndDenyWins) {
  const ClientAcl alice = parse(kAcl).for_client("c1", "alice");
  EXPECT_TRUE(alice.may_publish("alice/notes"));
  EXPECT_TRUE(alice.may_subscribe("alice/notes"));
  EXPECT_FALSE(alice.may_subscribe("alice/+"));  // it would receive alice/secret
  EXPECT_FALSE(alice.may_publish("alice/secret/key"));
  EXPECT_FALSE(alice.may_subscribe("alice/secret/key"));
  EXPECT_FALSE(alice.may_subscribe("alice/#"));  // it would receive alice/secret/...
  EXPECT_FALSE(alice.may_subscribe("alice/+/key"));
  EXPECT_TRUE(alice.may_publish("shared/in"));
  EXPECT_FALSE(alice.may_subscribe("shared/in"));  // write only
  EXPECT_FALSE(alice.may_publish("bob/x"));
  EXPECT_FALSE(alice.may_subscribe("public/news"));  // anonymous rules are not hers
  const ClientAcl bob = parse(kAcl).for_client("c2", "bob");
  EXPECT_TRUE(bob.may_publish("bob/x"));  // no access word: readwrite
  EXPECT_TRUE(bob.may_subscribe("bob/#"));
}

TEST(AclFile, PatternsAreFilledInWithClientIdAndUsername) {
  const ClientAcl sensor = parse(kAcl).for_client("sensor-7", "bob");
  EXPECT_TRUE(sensor.may_publish("devices/sensor-7/temp"));
  EXPECT_FALSE(sensor.may_publish("devices/sensor-8/temp"));
  EXPECT_TRUE(sensor.may_subscribe("users/bob/inbox"));
  EXPECT_FALSE(sensor.may_subscribe("users/alice/inbox"));
  const ClientAcl anonymous = parse(kAcl).for_client("sensor-7", "");
  EXPECT_FALSE(anonymous.may_subscribe("users//inbox"));  // no username: %u grants nothing
}

TEST(AclFile, AWildcardInAClientIdDoesNotWidenAPattern) {
  const AclFile acl = parse(kAcl);
  EXPECT_FALSE(acl.for_client("+", "").may_publish("devices/other/temp"));
  EXPECT_FALSE(acl.for_client("#", "").may_subscribe("devices/#"));
  EXPECT_FALSE(acl.for_client("a/b", "").may_publish("devices/a/b/x"));
}

TEST(AclFile, ADenyPatternThatCannotBeFilledInStillDenies) {
  const AclFile acl = parse("topic readwrite #\npattern deny private/%c/#\n");
  const ClientAcl odd = acl.for_client("+", "");
  EXPECT_FALSE(odd.may_publish("private/anyone/x"));
  EXPECT_TRUE(odd.may_publish("public/x"));
}

TEST(AclFile, MistakesAreReportedWithTheirLine) {
  std::string error;
  EXPECT_FALSE(AclFile::parse("topic read a\nuser\n", "acl.conf", error));
  EXPECT_NE(error.find("acl.conf:2:"), std::string::npos) << error;
  EXPECT_FALSE(AclFile::parse("\n\ntopci read a\n", "acl.conf", error));
  EXPECT_NE(error.find("acl.conf:3:"), std::string::npos) << error;
  EXPECT_FALSE(AclFile::parse("topic read\n", "acl.conf", error));
  EXPECT_NE(error.find("acl.conf:1:"), std::string::npos) << error;
}

}  // namespace
}  // namespace sluice::auth
