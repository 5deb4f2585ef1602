// UTF-8 validation at the edges of every byte-sequence class [MQTT-1.5.4].
#include "mqtt/utf8.hpp"

#include <gtest/gtest.h>

#include <string>

namespace sluice::mqtt {
namespace {

Utf8Check check(std::string_view text) {
  return check_utf8(text);
}

TEST(Utf8, AcceptsWellFormedText) {
  EXPECT_EQ(check(""), Utf8Check::kValid);
  EXPECT_EQ(check("plain ascii"), Utf8Check::kValid);
  EXPECT_EQ(check("\x7F"), Utf8Check::kValid);
  EXPECT_EQ(check("\xC2\x80"), Utf8Check::kValid);          // U+0080
  EXPECT_EQ(check("\xDF\xBF"), Utf8Check::kValid);          // U+07FF
  EXPECT_EQ(check("\xE0\xA0\x80"), Utf8Check::kValid);      // U+0800
  EXPECT_EQ(check("\xED\x9F\xBF"), Utf8Check::kValid);      // U+D7FF
  EXPECT_EQ(check("\xEE\x80\x80"), Utf8Check::kValid);      // U+E000
  EXPECT_EQ(check("\xEF\xBF\xBF"), Utf8Check::kValid);      // U+FFFF
  EXPECT_EQ(check("\xF0\x90\x80\x80"), Utf8Check::kValid);  // U+10000
  EXPECT_EQ(check("\xF4\x8F\xBF\xBF"), Utf8Check::kValid);  // U+10FFFF
  EXPECT_EQ(check("temp/°C/Ω/日本/🙂"), Utf8Check::kValid);
}

TEST(Utf8, MQTT_1_5_4_2_RefusesNull) {
  EXPECT_EQ(check(std::string_view("\0", 1)), Utf8Check::kNullChar);
  EXPECT_EQ(check(std::string_view("ab\0c", 4)), Utf8Check::kNullChar);
}

TEST(Utf8, MQTT_1_5_4_1_RefusesIllFormedSequences) {
  for (std::string_view bad : {
           "\x80",              // lone continuation byte
           "\xC0\x80",          // overlong U+0000
           "\xC1\xBF",          // overlong U+007F
           "\xE0\x9F\xBF",      // overlong U+07FF
           "\xF0\x8F\xBF\xBF",  // overlong U+FFFF
           "\xED\xA0\x80",      // surrogate U+D800
           "\xED\xBF\xBF",      // surrogate U+DFFF
           "\xF4\x90\x80\x80",  // U+110000
           "\xF5\x80\x80\x80",  // lead byte never valid
           "\xFF",              // never valid
           "\xC2",              // truncated
           "\xE2\x82",          // truncated
           "\xF0\x9F\x99",      // truncated
           "\xE2\x28\xA1",      // bad continuation
           "\xC2\x41",          // bad continuation
       }) {
    EXPECT_EQ(check(bad), Utf8Check::kIllFormed) << testing::PrintToString(bad);
  }
}

// ASCII is checked eight bytes at a time: a NUL or a bad sequence at any
// offset of a long text, inside a word or across its end, is still found.
TEST(Utf8, FindsWhatIsWrongAtEveryOffsetOfALongText) {
  for (std::size_t at = 0; at < 24; ++at) {
    std::string text(24, 'a');
    text[at] = '\0';
    EXPECT_EQ(check(text), Utf8Check::kNullChar) << at;
    text[at] = '\xC0';  // overlong lead
    EXPECT_EQ(check(text), Utf8Check::kIllFormed) << at;
    if (at + 1 < text.size()) {
      text.replace(at, 2, "\xC2\x80");  // U+0080 among ASCII
      EXPECT_EQ(check(text), Utf8Check::kValid) << at;
    }
  }
  EXPECT_EQ(check("sluice-bench/12345/p2p/7"), Utf8Check::kValid);
}

}  // namespace
}  // namespace sluice::mqtt
