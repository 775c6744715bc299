#include "scheduler/text_stream.h"

#include <gtest/gtest.h>

namespace ember::scheduler {
namespace {

TEST(TextStream, PassesPlainTextThrough) {
  TextStream t;
  EXPECT_EQ(t.Append("Hello"), "Hello");
  EXPECT_EQ(t.Append(" world"), " world");
  EXPECT_EQ(t.Flush(), "");
}

TEST(TextStream, HoldsBackIncompleteUtf8) {
  TextStream t;
  EXPECT_EQ(t.Append("caf\xC3"), "caf");
  EXPECT_EQ(t.Append("\xA9!"), "\xC3\xA9!");
  EXPECT_EQ(t.Append("\xF0\x9F"), "");
  EXPECT_EQ(t.Append("\x98\x80"), "\xF0\x9F\x98\x80");
}

TEST(TextStream, StopStringAcrossTokensCutsOutput) {
  TextStream t({"END"});
  EXPECT_EQ(t.Append("abc E"), "abc ");
  EXPECT_EQ(t.Append("N"), "");
  EXPECT_EQ(t.Append("Dxyz"), "");
  EXPECT_TRUE(t.stopped());
  EXPECT_EQ(t.Append("more"), "");
}

TEST(TextStream, FalseStopPrefixIsReleased) {
  TextStream t({"END"});
  EXPECT_EQ(t.Append("EN"), "");
  EXPECT_EQ(t.Append("x"), "ENx");
  EXPECT_EQ(t.Append("E"), "");
  EXPECT_EQ(t.Flush(), "E");
  EXPECT_FALSE(t.stopped());
}

TEST(TextStream, EarliestOfSeveralStopsWins) {
  TextStream t({"cd", "b"});
  EXPECT_EQ(t.Append("abcd"), "a");
  EXPECT_TRUE(t.stopped());
}

}  // namespace
}  // namespace ember::scheduler
