// prices.toml parsing: exact micro-dollars from decimal text, defaults, and errors that name
// the file, the line and what to write instead.
#include "ledger/prices.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

namespace ember::ledger {
namespace {

using ::testing::HasSubstr;

std::string ErrorOf(std::string_view text) {
  auto r = ParsePrices(text, "prices.toml");
  return r ? std::string("(accepted)") : r.error().message;
}

TEST(Prices, ParsesTheIssueExampleExactly) {
  auto prices = ParsePrices(R"(
[models."stories260K"]
input_per_mtok = 0.15          # dollars per million prompt tokens
cached_input_per_mtok = 0.075
output_per_mtok = 0.60
[models."*"]
input_per_mtok = 1
output_per_mtok = 2_000.000001
[instance]
price_per_hour = 3.06
spot = true
on_demand_price_per_hour = 9.1
name = "m7i.2xlarge"
)",
                            "prices.toml");
  ASSERT_TRUE(prices) << prices.error().message;
  EXPECT_EQ(prices->models.at("stories260K"), (ModelPrice{.input_per_mtok = 150'000,
                                                          .cached_input_per_mtok = 75'000,
                                                          .output_per_mtok = 600'000}));
  ASSERT_TRUE(prices->fallback);
  EXPECT_EQ(prices->fallback->input_per_mtok, 1'000'000);
  EXPECT_EQ(prices->fallback->cached_input_per_mtok, 1'000'000);  // defaults to input
  EXPECT_EQ(prices->fallback->output_per_mtok, 2'000'000'001);
  EXPECT_EQ(prices->instance, (InstancePrice{.price_per_hour = 3'060'000,
                                             .on_demand_price_per_hour = 9'100'000,
                                             .spot = true,
                                             .name = "m7i.2xlarge"}));
}

TEST(Prices, ForFindsTheModelThenTheFallbackThenNothing) {
  auto with = ParsePrices("[models.a]\noutput_per_mtok = 1\n[models.\"*\"]\noutput_per_mtok = 2\n",
                          "p.toml");
  ASSERT_TRUE(with) << with.error().message;
  EXPECT_EQ(with->For("a")->output_per_mtok, 1'000'000);
  EXPECT_EQ(with->For("b")->output_per_mtok, 2'000'000);
  auto without = ParsePrices("[models.a]\n", "p.toml");
  ASSERT_TRUE(without) << without.error().message;
  EXPECT_EQ(*without->For("a"), ModelPrice{});
  EXPECT_EQ(without->For("b"), nullptr);
}

TEST(Prices, EmptyFileMeansEverythingCostsNothing) {
  auto prices = ParsePrices("# no prices yet\n", "p.toml");
  ASSERT_TRUE(prices) << prices.error().message;
  EXPECT_EQ(*prices, Prices{});
  EXPECT_EQ(prices->For("anything"), nullptr);
}

TEST(Prices, OnDemandDefaultsToThePrice) {
  auto prices = ParsePrices("[instance]\nprice_per_hour = 0.4032\n", "p.toml");
  ASSERT_TRUE(prices) << prices.error().message;
  EXPECT_EQ(prices->instance.price_per_hour, 403'200);
  EXPECT_EQ(prices->instance.on_demand_price_per_hour, 403'200);
  EXPECT_FALSE(prices->instance.spot);
}

TEST(Prices, TyposAndBadValuesNameTheLine) {
  EXPECT_THAT(ErrorOf("[models.m]\ninput_per_mtoks = 1\n"),
              HasSubstr("prices.toml:2: unknown key \"input_per_mtoks\" in [models.\"m\"] "
                        "(allowed: input_per_mtok, cached_input_per_mtok, output_per_mtok)"));
  EXPECT_THAT(ErrorOf("\n[instance]\nprice = 1\n"),
              HasSubstr("prices.toml:3: unknown key \"price\" in [instance] (allowed: "
                        "price_per_hour, spot, on_demand_price_per_hour, name, "
                        "interruption_notice_seconds)"));
  EXPECT_THAT(ErrorOf("[model.m]\n"), HasSubstr("prices.toml:1: unknown key \"model\" at the top"));
  EXPECT_THAT(ErrorOf("[models.m]\noutput_per_mtok = -0.5\n"),
              HasSubstr("prices.toml:2: models.\"m\".output_per_mtok: \"-0.5\" is negative"));
  EXPECT_THAT(ErrorOf("[models.m]\noutput_per_mtok = 0.0000001\n"),
              HasSubstr("prices.toml:2: models.\"m\".output_per_mtok: \"0.0000001\" has a "
                        "fraction finer than a micro-dollar"));
  EXPECT_THAT(ErrorOf("[models.m]\noutput_per_mtok = 1e3\n"), HasSubstr("not a decimal number"));
  EXPECT_THAT(ErrorOf("[models.m]\noutput_per_mtok = inf\n"),
              HasSubstr("prices.toml:2: models.\"m\".output_per_mtok must be a decimal number"));
  EXPECT_THAT(ErrorOf("[models.m]\noutput_per_mtok = \"0.6\"\n"),
              HasSubstr("prices.toml:2: models.\"m\".output_per_mtok must be a number of "
                        "dollars, not a string"));
  EXPECT_THAT(ErrorOf("[instance]\nspot = 1\n"),
              HasSubstr("prices.toml:2: instance.spot must be true or false, not an integer"));
  EXPECT_THAT(ErrorOf("[instance]\nname = 1\n"), HasSubstr("instance.name must be a string"));
  EXPECT_THAT(ErrorOf("models = 1\n"), HasSubstr("prices.toml:1: models must be a table"));
  EXPECT_THAT(ErrorOf("[models]\nm = 1\n"),
              HasSubstr("prices.toml:2: [models.\"m\"] must be a table of prices"));
  EXPECT_THAT(ErrorOf("[instance]\nprice_per_hour = 1\non_demand_price_per_hour = 2\n"),
              HasSubstr("prices.toml:3: instance.on_demand_price_per_hour is for spot"));
  EXPECT_THAT(ErrorOf("[models.m]\n[models.m]\n"), HasSubstr("prices.toml:2: table"));
}

TEST(Prices, LoadReadsAFileAndNamesAMissingOne) {
  const auto path = std::filesystem::temp_directory_path() / "ember_prices_test.toml";
  std::ofstream(path) << "[models.m]\ninput_per_mtok = 0.15\n";
  auto prices = LoadPrices(path);
  std::filesystem::remove(path);
  ASSERT_TRUE(prices) << prices.error().message;
  EXPECT_EQ(prices->models.at("m").input_per_mtok, 150'000);
  auto missing = LoadPrices(path);
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, ErrorCode::kNotFound);
  EXPECT_THAT(missing.error().message,
              HasSubstr("cannot read prices file " + path.string() + ": No such file"));
}

TEST(Prices, TheShippedExampleParses) {
  // src/ledger/prices_test.cc -> the source tree's docs/examples/
  const auto root = std::filesystem::path(__FILE__).parent_path().parent_path().parent_path();
  auto prices = LoadPrices(root / "docs/examples/prices.toml");
  ASSERT_TRUE(prices) << prices.error().message;
  EXPECT_EQ(prices->models.at("stories260K").input_per_mtok, 150'000);
}

}  // namespace
}  // namespace ember::ledger

namespace ember::ledger {
namespace {

TEST(Prices, SpotInterruptionNotice) {
  auto p = ParsePrices(
      "[instance]\nprice_per_hour = 1\nspot = true\ninterruption_notice_seconds = 120\n",
      "prices.toml");
  ASSERT_TRUE(p) << p.error().message;
  EXPECT_EQ(p->instance.interruption_notice_seconds, 120);
  EXPECT_FALSE(ParsePrices("[instance]\ninterruption_notice_seconds = 0\n", "prices.toml"));
  EXPECT_FALSE(ParsePrices("[instance]\ninterruption_notice_seconds = 1.5\n", "prices.toml"));
}

}  // namespace
}  // namespace ember::ledger
