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

TEST(TextStream, ReleasesATokenWithItsLastByte) {
  TextStream t;
  EXPECT_EQ(t.Append("ab"), "ab");
  EXPECT_EQ(t.TakeReleased(), 1);
  EXPECT_EQ(t.Append("caf\xC3"), "caf");
  EXPECT_EQ(t.TakeReleased(), 0) << "its last byte is held back";
  EXPECT_EQ(t.Append("\xA9!"), "\xC3\xA9!");
  EXPECT_EQ(t.TakeReleased(), 2);
  EXPECT_EQ(t.Append(""), "");
  EXPECT_EQ(t.TakeReleased(), 1) << "no bytes: final at once";
  EXPECT_EQ(t.TakeReleased(), 0);
}

TEST(TextStream, HeldBackStopPrefixReleasesItsTokensLater) {
  TextStream t({"END"});
  EXPECT_EQ(t.Append("x"), "x");
  EXPECT_EQ(t.Append("E"), "");
  EXPECT_EQ(t.Append(""), "");
  EXPECT_EQ(t.TakeReleased(), 1) << "the empty token waits behind the held-back E";
  EXPECT_EQ(t.Append("Nz"), "ENz");
  EXPECT_EQ(t.TakeReleased(), 3);
  EXPECT_EQ(t.Append("E"), "");
  EXPECT_EQ(t.Flush(), "E");
  EXPECT_EQ(t.TakeReleased(), 1);
}

TEST(TextStream, TokensCutByAStopStringAreNeverReleased) {
  TextStream t({"END"});
  EXPECT_EQ(t.Append("ab"), "ab");
  EXPECT_EQ(t.Append("cE"), "c");
  EXPECT_EQ(t.TakeReleased(), 1) << "cE is not final: its E may start the stop string";
  EXPECT_EQ(t.Append("ND"), "");
  EXPECT_TRUE(t.stopped());
  EXPECT_EQ(t.TakeReleased(), 0) << "cE straddles the cut, ND is inside it";
  EXPECT_EQ(t.Flush(), "");
  EXPECT_EQ(t.TakeReleased(), 0);
}

TEST(TextStream, TokensBeforeTheCutInTheSameAppendAreReleased) {
  TextStream t({"END"});
  EXPECT_EQ(t.Append("a"), "a");
  EXPECT_EQ(t.Append("E"), "");
  EXPECT_EQ(t.Append("b"), "Eb");
  EXPECT_EQ(t.TakeReleased(), 3);
  EXPECT_EQ(t.Append("xEND"), "x");
  EXPECT_EQ(t.TakeReleased(), 0);
  TextStream u({"END"});
  EXPECT_EQ(u.Append("q"), "q");
  EXPECT_EQ(u.Append("E"), "");
  EXPECT_EQ(u.Append("ND"), "");
  EXPECT_EQ(u.TakeReleased(), 1) << "only q: E and ND are the stop string";
}

}  // namespace
}  // namespace ember::scheduler
