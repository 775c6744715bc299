#include "common/toml_reader.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace ember::toml {
namespace {

using ::testing::HasSubstr;

std::string ErrorOf(std::string_view text) {
  auto r = Read(text, "t.toml");
  return r ? std::string("(accepted)") : r.error().message;
}

TEST(TomlReader, TablesArraysOfTablesDottedAndQuotedKeysInFileOrder) {
  auto root = Read(
      "# c\r\nz = 1\r\n[a]\nb.c = \"x\" # trailing\n[a.\"d.e\"]\n'f' = 'lit\\n'\n"
      "[[k]]\nid = 1\n[[k]]\nid = -2_000\n",
      "t.toml");
  ASSERT_TRUE(root) << root.error().message;
  const Node& r = **root;
  ASSERT_EQ(r.table.size(), 3u);
  EXPECT_EQ(r.table[0].first, "z");
  EXPECT_EQ(r.table[1].first, "a");
  EXPECT_EQ(r.Find("a")->Find("b")->Find("c")->string, "x");
  EXPECT_EQ(r.Find("a")->Find("d.e")->Find("f")->string, "lit\\n");
  ASSERT_EQ(r.Find("k")->array.size(), 2u);
  EXPECT_EQ(r.Find("k")->array[1]->Find("id")->integer, -2000);
  EXPECT_EQ(r.Find("k")->array[1]->line, 9);
}

TEST(TomlReader, ValuesAndEscapes) {
  auto root = Read(
      "s = \"q\\\" b\\\\ t\\t u\\u00e9 U\\U0001F600\"\nf = 2.5e-3\ng = -inf\nh = true\n"
      "i = 9223372036854775807\n",
      "t.toml");
  ASSERT_TRUE(root) << root.error().message;
  const Node& r = **root;
  EXPECT_EQ(r.Find("s")->string, "q\" b\\ t\t u\xc3\xa9 U\xf0\x9f\x98\x80");
  EXPECT_DOUBLE_EQ(r.Find("f")->floating, 2.5e-3);
  EXPECT_TRUE(r.Find("g")->is_floating());
  EXPECT_TRUE(r.Find("h")->boolean);
  EXPECT_EQ(r.Find("i")->integer, 9223372036854775807);
}

TEST(TomlReader, WhatTenantsTomlDoesNotUseIsRefusedWithItsLine) {
  EXPECT_THAT(ErrorOf("\na = [1, 2]\n"), HasSubstr("t.toml:2: arrays are not used"));
  EXPECT_THAT(ErrorOf("a = { b = 1 }\n"), HasSubstr("t.toml:1: inline tables"));
  EXPECT_THAT(ErrorOf("a = \"\"\"x\"\"\"\n"), HasSubstr("multi-line strings"));
  EXPECT_THAT(ErrorOf("\n\na = 2026-12-05\n"), HasSubstr("t.toml:3: dates"));
  EXPECT_THAT(ErrorOf("a = 0x1f\n"), HasSubstr("hexadecimal"));
}

TEST(TomlReader, MalformedInputNamesItsLine) {
  EXPECT_THAT(ErrorOf("a = 1\na = 2\n"), HasSubstr("t.toml:2: key \"a\" already exists"));
  EXPECT_THAT(ErrorOf("[a]\n[a]\n"), HasSubstr("t.toml:2: table \"a\" already exists"));
  EXPECT_THAT(ErrorOf("a = 1\n[a.b]\n"), HasSubstr("t.toml:2: \"a\" already holds a value"));
  EXPECT_THAT(ErrorOf("a = \"open\n"), HasSubstr("t.toml:1: a string is not closed"));
  EXPECT_THAT(ErrorOf("a = \"\\q\"\n"), HasSubstr("unknown escape"));
  EXPECT_THAT(ErrorOf("a = \"\\ud800\"\n"), HasSubstr("no Unicode scalar"));
  EXPECT_THAT(ErrorOf("a = 1 2\n"), HasSubstr("expected the end of the line"));
  EXPECT_THAT(ErrorOf("a = 01\n"), HasSubstr("leading zeros"));
  EXPECT_THAT(ErrorOf("a = 1__0\n"), HasSubstr("is not a value"));
  EXPECT_THAT(ErrorOf("a = 9223372036854775808\n"), HasSubstr("64-bit"));
  EXPECT_THAT(ErrorOf("a = 1e999\n"), HasSubstr("out of range"));
  EXPECT_THAT(ErrorOf("a =\n"), HasSubstr("needs a value"));
  EXPECT_THAT(ErrorOf("[a\n"), HasSubstr("t.toml:1: expected ]"));
  EXPECT_THAT(ErrorOf("[[a]\n"), HasSubstr("expected ]]"));
  EXPECT_THAT(ErrorOf("= 1\n"), HasSubstr("expected a key"));
  EXPECT_THAT(ErrorOf("a = \"x\x01\"\n"), HasSubstr("control characters"));
}

}  // namespace
}  // namespace ember::toml
