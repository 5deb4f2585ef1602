// Password hashes in Mosquitto's formats, and password files.
#include "auth/password_file.hpp"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

namespace sluice::auth {
namespace {

// Made by `mosquitto_passwd -c -b FILE alice secret` (Mosquitto 2.0.11).
constexpr const char* kMosquittoLine =
    "$7$101$WaX9WAp+6krVvbXz$ZfRpubi8arlwySIA6GXlSTKidUGerkdUYdYXXiqhDlM6vq+wZ18z/u+xRYq5nvvc+"
    "n99b4UHVTiSZR4DvCq+Kw==";

std::string temp_path(const std::string& name) {
  return (std::filesystem::temp_directory_path() /
          ("sluice-auth-" + std::to_string(::getpid()) + "-" + name))
      .string();
}

TEST(PasswordHash, ReadsAndChecksAHashMadeByMosquittoPasswd) {
  const auto hash = parse_hash(kMosquittoLine);
  ASSERT_TRUE(hash);
  EXPECT_EQ(hash->iterations, 101u);
  EXPECT_EQ(hash->salt.size(), 12u);
  EXPECT_TRUE(verify(*hash, "secret"));
  EXPECT_FALSE(verify(*hash, "Secret"));
  EXPECT_FALSE(verify(*hash, ""));
  EXPECT_EQ(format_hash(*hash), kMosquittoLine);
}

TEST(PasswordHash, MadeHereRoundTripsWithARandomSalt) {
  const PasswordHash a = make_hash("pw", 50);
  const PasswordHash b = make_hash("pw", 50);
  EXPECT_NE(a.salt, b.salt);
  const auto parsed = parse_hash(format_hash(a));
  ASSERT_TRUE(parsed);
  EXPECT_TRUE(verify(*parsed, "pw"));
  EXPECT_FALSE(verify(*parsed, "pw "));
}

TEST(PasswordHash, RefusesWhatIsNotAHash) {
  for (const char* text : {"", "secret", "$7$$abc$def", "$7$x$YWJj$YWJj", "$5$YWJj$YWJj",
                           "$7$101$YWJj$YWJj" /* a 3-byte hash: not SHA-512 */}) {
    EXPECT_FALSE(parse_hash(text)) << text;
  }
}

TEST(PasswordFile, SetPasswordAddsAndReplacesUsersAndKeepsOthers) {
  const std::string path = temp_path("passwd");
  std::filesystem::remove(path);
  ASSERT_FALSE(set_password(path, "alice", "one"));
  ASSERT_FALSE(set_password(path, "bob", "two"));
  ASSERT_FALSE(set_password(path, "alice", "three"));
  std::string error;
  const auto file = PasswordFile::load(path, error);
  ASSERT_TRUE(file) << error;
  EXPECT_EQ(file->size(), 2u);
  EXPECT_TRUE(file->check("alice", "three"));
  EXPECT_FALSE(file->check("alice", "one"));
  EXPECT_TRUE(file->check("bob", "two"));
  EXPECT_FALSE(file->check("carol", "two"));
  EXPECT_TRUE(set_password(path, "a:b", "x"));  // ':' ends the username in the file
  std::filesystem::remove(path);
}

TEST(PasswordFile, ABadLineIsReportedWithItsNumber) {
  const std::string path = temp_path("bad");
  std::ofstream(path) << "# users\nalice:" << kMosquittoLine << "\nbob:plaintext\n";
  std::string error;
  EXPECT_FALSE(PasswordFile::load(path, error));
  EXPECT_NE(error.find(path + ":3:"), std::string::npos) << error;
  std::filesystem::remove(path);
  EXPECT_FALSE(PasswordFile::load(path, error));
  EXPECT_NE(error.find("cannot be read"), std::string::npos);
}

}  // namespace
}  // namespace sluice::auth
