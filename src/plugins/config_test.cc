// The plugins file: what an operator writes and which chain a request gets.
#include "plugins/config.h"

#include <gtest/gtest.h>

namespace ember::plugins {
namespace {

constexpr std::string_view kFile = R"(
[[plugin]]
name = "allowlist"
path = "model_allowlist.wasm"
configuration = "acme: tiny, small\n*: tiny"
failure = "fail-closed"
fuel_per_call = 1000000
memory_mib = 16

[[plugin]]
name = "redact"
path = "pii_redact.wasm"
failure = "fail-open"

[[chain]]
route = "/v1/chat/completions"
plugins = "allowlist, redact"

[[chain]]
route = "/v1/chat/completions"
tenant = "acme"
plugins = "redact"

[[chain]]
route = "*"
plugins = "allowlist"
)";

TEST(PluginsConfigTest, ReadsPluginsWithTheirLimitsPolicyAndConfiguration) {
  auto config = ParsePluginsConfig(kFile, "plugins.toml");
  ASSERT_TRUE(config.has_value()) << config.error().message;
  ASSERT_EQ(config->plugins.size(), 2u);
  const PluginEntry& allowlist = config->plugins[0];
  EXPECT_EQ(allowlist.configuration, "acme: tiny, small\n*: tiny");
  EXPECT_EQ(allowlist.failure, FailurePolicy::kFailClosed);
  EXPECT_EQ(allowlist.limits.fuel_per_call, 1000000u);
  EXPECT_EQ(allowlist.limits.memory_bytes, 16u << 20);
  EXPECT_EQ(config->plugins[1].failure, FailurePolicy::kFailOpen);
  EXPECT_EQ(config->plugins[1].limits.memory_bytes, Limits{}.memory_bytes);
}

TEST(PluginsConfigTest, ATenantsOwnChainWinsThenTheRouteThenTheDefault) {
  auto config = ParsePluginsConfig(kFile, "plugins.toml");
  ASSERT_TRUE(config.has_value()) << config.error().message;
  const Chain* acme = config->ChainFor("/v1/chat/completions", "acme");
  ASSERT_NE(acme, nullptr);
  EXPECT_EQ(acme->plugins, std::vector<std::string>{"redact"});
  const Chain* other = config->ChainFor("/v1/chat/completions", "other");
  ASSERT_NE(other, nullptr);
  EXPECT_EQ(other->plugins, (std::vector<std::string>{"allowlist", "redact"}));
  const Chain* completions = config->ChainFor("/v1/completions", "acme");
  ASSERT_NE(completions, nullptr);
  EXPECT_EQ(completions->plugins, std::vector<std::string>{"allowlist"});
}

TEST(PluginsConfigTest, MistakesNameTheLine) {
  auto unknown = ParsePluginsConfig("[[chain]]\nroute = \"*\"\nplugins = \"nope\"\n", "p.toml");
  ASSERT_FALSE(unknown.has_value());
  EXPECT_EQ(unknown.error().message,
            "p.toml:1: chain names plugin \"nope\", which no [[plugin]] defines");
  auto policy = ParsePluginsConfig(
      "[[plugin]]\nname = \"a\"\npath = \"a.wasm\"\nfailure = \"sometimes\"\n", "p.toml");
  ASSERT_FALSE(policy.has_value());
  EXPECT_EQ(policy.error().message, "p.toml:4: failure must be \"fail-closed\" or \"fail-open\"");
}

}  // namespace
}  // namespace ember::plugins
