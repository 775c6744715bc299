#include "tenancy/keys.h"

#include <gtest/gtest.h>

#include <cctype>
#include <set>
#include <string>

#include "tenancy/config.h"

namespace ember::tenancy {
namespace {

TEST(NewApiKey, PrefixAndFortyBase62Characters) {
  std::set<std::string> seen;
  std::set<char> chars;
  for (int i = 0; i < 200; ++i) {
    const std::string key = NewApiKey();
    ASSERT_EQ(key.size(), 43u) << key;
    ASSERT_TRUE(key.starts_with("ek_")) << key;
    for (char c : key.substr(3)) {
      ASSERT_TRUE(std::isalnum(static_cast<unsigned char>(c))) << key;
      chars.insert(c);
    }
    seen.insert(key);
  }
  EXPECT_EQ(seen.size(), 200u);
  // 8,000 draws from 62 characters: every one of them shows up unless the draw is broken.
  EXPECT_EQ(chars.size(), 62u);
}

TEST(NewKeyId, PrefixAndTwelveLowerHexDigits) {
  std::set<std::string> seen;
  for (int i = 0; i < 100; ++i) {
    const std::string id = NewKeyId();
    ASSERT_EQ(id.size(), 16u) << id;
    ASSERT_TRUE(id.starts_with("key_")) << id;
    for (char c : id.substr(4)) ASSERT_TRUE(std::isxdigit(c) && !std::isupper(c)) << id;
    seen.insert(id);
  }
  EXPECT_EQ(seen.size(), 100u);
}

TEST(Priority, NamesRoundTrip) {
  for (Priority p : {Priority::kInteractive, Priority::kBatch}) {
    EXPECT_EQ(ParsePriority(PriorityName(p)), p);
  }
  EXPECT_EQ(PriorityName(Priority::kBatch), "batch");
  EXPECT_FALSE(ParsePriority("Batch"));
  EXPECT_FALSE(ParsePriority(""));
}

TEST(Config, FindTenant) {
  Config c;
  for (std::string name : {"a", "b"}) {
    Tenant t;
    t.name = std::move(name);
    t.weight = c.tenants.empty() ? 1 : 3;
    c.tenants.push_back(std::move(t));
  }
  ASSERT_NE(c.FindTenant("b"), nullptr);
  EXPECT_EQ(c.FindTenant("b")->weight, 3);
  EXPECT_EQ(c.FindTenant("c"), nullptr);
  c.FindTenant("a")->enabled = false;
  EXPECT_FALSE(c.tenants[0].enabled);
}

}  // namespace
}  // namespace ember::tenancy
