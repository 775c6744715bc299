#include "tenancy/store.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "common/sha256.h"

namespace ember::tenancy {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

const std::string kHash = Sha256Hex("ek_example");

// (Designated initializers would do, but g++ 12 warns about every member they leave out.)
Tenant Named(std::string name, double weight = 1.0) {
  Tenant t;
  t.name = std::move(name);
  t.weight = weight;
  return t;
}

std::string ParseError(std::string_view text) {
  auto parsed = ParseConfig(text, "tenants.toml");
  if (parsed) return "(parsed)";
  EXPECT_EQ(parsed.error().code, ErrorCode::kInvalidArgument);
  return parsed.error().message;
}

Config Example() {
  Config c;
  Tenant acme = Named("acme", 2.0);
  acme.display_name = "Acme Corp";
  acme.limits.rpm = 600;
  acme.limits.output_tpm = 20000;
  acme.limits.max_tokens = 512;
  acme.model_limits["stories260K"].output_tpm = 5000;
  acme.model_limits["org/model.v2"] = Limits{};
  c.tenants.push_back(acme);
  Tenant beta = Named("beta.team-1_x", 0.1);
  beta.display_name = "quote \" backslash \\ tab\t é 日本 🚀";
  beta.priority = Priority::kBatch;
  beta.enabled = false;
  c.tenants.push_back(beta);
  c.keys.push_back(ApiKey{
      .id = "key_0123456789ab", .tenant = "acme", .sha256_hex = kHash, .created = 1764921600});
  c.keys.push_back(ApiKey{.id = "key_ba9876543210",
                          .tenant = "beta.team-1_x",
                          .sha256_hex = Sha256Hex("other"),
                          .created = 0});
  return c;
}

TEST(ParseConfig, TheDocumentedExample) {
  auto c = ParseConfig(R"(# comment
[tenants.acme]
display_name = "Acme Corp"
weight = 2            # an integer weight is fine
priority = "batch"
enabled = false
rpm = 600
input_tpm = 100000
output_tpm = 20000
max_concurrent = 8
max_queued = 16
max_tokens = 512

[tenants.acme.models."stories260K"]
output_tpm = 5000

[tenants.zed]

[[keys]]
id = "key_0123456789ab"
tenant = "acme"
sha256 = ")" + kHash + R"("
created = 1764921600
)",
                       "tenants.toml");
  ASSERT_TRUE(c) << c.error().message;
  ASSERT_EQ(c->tenants.size(), 2u);
  const Tenant& t = c->tenants[0];
  EXPECT_EQ(t.name, "acme");
  EXPECT_EQ(t.display_name, "Acme Corp");
  EXPECT_EQ(t.weight, 2.0);
  EXPECT_EQ(t.priority, Priority::kBatch);
  EXPECT_FALSE(t.enabled);
  EXPECT_EQ(t.limits, (Limits{600, 100000, 20000, 8, 16, 512}));
  Limits model_limits;
  model_limits.output_tpm = 5000;
  EXPECT_EQ(t.model_limits.at("stories260K"), model_limits);
  EXPECT_EQ(c->tenants[1], Named("zed"));  // defaults: weight 1, interactive, enabled
  ASSERT_EQ(c->keys.size(), 1u);
  EXPECT_EQ(c->keys[0], (ApiKey{"key_0123456789ab", "acme", kHash, 1764921600}));
}

TEST(ParseConfig, TenantsKeepFileOrder) {
  auto c = ParseConfig("[tenants.zz]\n[tenants.aa]\n[tenants.mm]\n", "f");
  ASSERT_TRUE(c);
  ASSERT_EQ(c->tenants.size(), 3u);
  EXPECT_EQ(c->tenants[0].name, "zz");
  EXPECT_EQ(c->tenants[1].name, "aa");
  EXPECT_EQ(c->tenants[2].name, "mm");
}

TEST(ParseConfig, EmptyTextIsAnEmptyConfig) {
  auto c = ParseConfig("# nothing yet\n", "f");
  ASSERT_TRUE(c);
  EXPECT_TRUE(c->empty());
  EXPECT_TRUE(c->keys.empty());
}

TEST(ParseConfig, SyntaxErrorsNameFileAndLine) {
  EXPECT_THAT(ParseError("[tenants.a]\nweight = 2.0.1\n"), HasSubstr("tenants.toml:2: "));
  EXPECT_THAT(ParseError("\n\n[tenants.a]\nrpm = \n"), HasSubstr("tenants.toml:4: "));
  EXPECT_THAT(ParseError("[tenants.a]\nrpm = 1\nrpm = 2\n"),
              ::testing::AllOf(HasSubstr("tenants.toml:3: "), HasSubstr("already exists")));
  EXPECT_THAT(ParseError("[tenants.a\n"), HasSubstr("tenants.toml:1: "));
  // One line, without a source excerpt.
  EXPECT_THAT(ParseError("[tenants.a]\nweight = 2.0.1\n"), ::testing::Not(HasSubstr("\n")));
}

TEST(ParseConfig, DeepNestingAndLongDottedKeysAreRefusedBeforeTheParserSeesThem) {
  // Refused before the reader: nesting and dotted parts are bounded.
  EXPECT_THAT(ParseError("[tenants.a]\nweight = " + std::string(200000, '[') + "\n"),
              ::testing::AllOf(HasSubstr("tenants.toml:2: "), HasSubstr("nested deeper")));
  std::string dotted = "\n\na";
  for (int i = 0; i < 100000; ++i) dotted += ".a";
  EXPECT_THAT(ParseError(dotted + " = 1\n"),
              ::testing::AllOf(HasSubstr("tenants.toml:3: "), HasSubstr("dotted parts")));
  // Brackets, braces and dots inside strings and comments do not count.
  auto ok =
      ParseConfig("# [[[[ ... ]]]] " + std::string(40, '.') + "\n[tenants.a]\ndisplay_name = \"" +
                      std::string(40, '[') + std::string(40, '.') +
                      "\"\n[tenants.a.models.\"x.y.z\"]\n"
                      "rpm = 1\n",
                  "tenants.toml");
  ASSERT_TRUE(ok) << ok.error().message;
  EXPECT_EQ(ok->tenants[0].display_name, std::string(40, '[') + std::string(40, '.'));
}

TEST(ParseConfig, UnknownKeysAreErrorsNamingTheKeyAndTheAllowedOnes) {
  EXPECT_THAT(ParseError("tenant = 1\n"),
              ::testing::AllOf(HasSubstr("tenants.toml:1: unknown key \"tenant\""),
                               HasSubstr("allowed: tenants, keys")));
  const std::string in_tenant = ParseError("[tenants.a]\nweight = 1\nrate_limit = 5\n");
  EXPECT_THAT(in_tenant, HasSubstr("tenants.toml:3: unknown key \"rate_limit\" in tenant \"a\""));
  EXPECT_THAT(in_tenant, HasSubstr("max_concurrent"));
  EXPECT_THAT(ParseError("[tenants.a.models.m]\nrpm = 1\nweight = 2\n"),
              ::testing::AllOf(HasSubstr("tenants.toml:3: unknown key \"weight\""),
                               HasSubstr("model \"m\"")));
  EXPECT_THAT(ParseError("[tenants.a]\n[[keys]]\nid = \"key_0123456789ab\"\ntenant = \"a\"\n"
                         "sha256 = \"" +
                         kHash + "\"\nsecret = \"x\"\n"),
              HasSubstr("tenants.toml:6: unknown key \"secret\" in [[keys]]"));
  EXPECT_THAT(ParseError("[tenants.a.extra]\n"),
              HasSubstr("tenants.toml:1: unknown key \"extra\""));
}

TEST(ParseConfig, BadValuesNameTheLine) {
  EXPECT_THAT(ParseError("[tenants.Acme]\n"),
              HasSubstr("tenants.toml:1: invalid tenant name \"Acme\""));
  EXPECT_THAT(ParseError("[tenants.\"-a\"]\n"), HasSubstr("invalid tenant name"));
  EXPECT_THAT(ParseError("[tenants." + std::string(64, 'a') + "]\n"),
              HasSubstr("invalid tenant name"));
  EXPECT_EQ(ParseError("[tenants." + std::string(63, 'a') + "]\n"), "(parsed)");
  EXPECT_THAT(ParseError("[tenants.a]\nweight = 0\n"),
              HasSubstr("tenants.toml:2: weight must be a finite number > 0"));
  EXPECT_THAT(ParseError("[tenants.a]\nweight = -1.5\n"), HasSubstr("tenants.toml:2: weight"));
  EXPECT_THAT(ParseError("[tenants.a]\nweight = inf\n"), HasSubstr("tenants.toml:2: weight"));
  EXPECT_THAT(ParseError("[tenants.a]\nweight = nan\n"), HasSubstr("tenants.toml:2: weight"));
  EXPECT_THAT(ParseError("[tenants.a]\nweight = \"2\"\n"),
              HasSubstr("tenants.toml:2: weight must be a number, not a string"));
  EXPECT_THAT(ParseError("[tenants.a]\n\npriority = \"urgent\"\n"),
              HasSubstr("tenants.toml:3: priority must be \"interactive\" or \"batch\""));
  EXPECT_THAT(ParseError("[tenants.a]\nenabled = \"yes\"\n"), HasSubstr("tenants.toml:2: enabled"));
  EXPECT_THAT(ParseError("[tenants.a]\nrpm = 0\n"),
              ::testing::AllOf(HasSubstr("tenants.toml:2: rpm must be an integer >= 1"),
                               HasSubstr("omit it for no limit")));
  EXPECT_THAT(ParseError("[tenants.a]\nmax_tokens = -5\n"),
              HasSubstr("tenants.toml:2: max_tokens"));
  EXPECT_THAT(ParseError("[tenants.a]\nrpm = 1.5\n"),
              HasSubstr("tenants.toml:2: rpm must be an integer, not a float"));
  EXPECT_THAT(ParseError("[tenants.a.models.m]\noutput_tpm = 0\n"),
              HasSubstr("tenants.toml:2: output_tpm must be an integer >= 1"));
  EXPECT_THAT(ParseError("[tenants.a]\ndisplay_name = \"bell\\u0007\"\n"),
              HasSubstr("tenants.toml:2: display_name"));
  EXPECT_THAT(ParseError("tenants = 3\n"), HasSubstr("tenants.toml:1: tenants must be a table"));
  EXPECT_THAT(ParseError("[tenants]\na = 1\n"), HasSubstr("tenants.toml:2: tenant \"a\" must be"));
}

std::string KeyText(std::string_view id, std::string_view tenant, std::string_view hash,
                    std::string_view created = "1") {
  return "\n[[keys]]\nid = \"" + std::string(id) + "\"\ntenant = \"" + std::string(tenant) +
         "\"\nsha256 = \"" + std::string(hash) + "\"\ncreated = " + std::string(created) + "\n";
}

TEST(ParseConfig, KeysAreChecked) {
  const std::string t = "[tenants.a]\n";  // line 1; a key's lines are 3 (header) to 7
  EXPECT_EQ(ParseError(t + KeyText("key_0123456789ab", "a", kHash)), "(parsed)");
  EXPECT_THAT(ParseError(t + KeyText("key_0123", "a", kHash)),
              HasSubstr("tenants.toml:4: invalid key id \"key_0123\""));
  EXPECT_THAT(ParseError(t + KeyText("key_0123456789AB", "a", kHash)),
              HasSubstr("tenants.toml:4: invalid key id"));
  EXPECT_THAT(ParseError(t + KeyText("key_0123456789ab", "b", kHash)),
              HasSubstr("tenants.toml:5: no tenant \"b\""));
  const std::string upper_hash = "ABCDEF" + kHash.substr(6);
  const std::string bad_hash = ParseError(t + KeyText("key_0123456789ab", "a", upper_hash));
  EXPECT_THAT(bad_hash, HasSubstr("tenants.toml:6: sha256 must be 64 lower-case hex digits"));
  EXPECT_THAT(bad_hash, ::testing::Not(HasSubstr(upper_hash)));  // hashes are never echoed
  EXPECT_THAT(ParseError(t + KeyText("key_0123456789ab", "a", kHash.substr(1))),
              HasSubstr("tenants.toml:6: sha256"));
  EXPECT_THAT(ParseError(t + KeyText("key_0123456789ab", "a", kHash, "-1")),
              HasSubstr("tenants.toml:7: created must be an integer >= 0"));
  EXPECT_THAT(ParseError(t + KeyText("key_0123456789ab", "a", kHash) +
                         KeyText("key_0123456789ab", "a", Sha256Hex("2"))),
              HasSubstr("tenants.toml:10: key id key_0123456789ab is used twice"));
  EXPECT_THAT(ParseError(t + KeyText("key_0123456789ab", "a", kHash) +
                         KeyText("key_0123456789ac", "a", kHash)),
              HasSubstr("tenants.toml:12: the same key hash appears twice"));
  EXPECT_THAT(ParseError(t + "\n[[keys]]\nid = \"key_0123456789ab\"\ntenant = \"a\"\n"),
              HasSubstr("tenants.toml:3: a key needs id, tenant and sha256"));
  EXPECT_THAT(ParseError(t + "keys = 5\n"), HasSubstr("tenants.toml:2: unknown key \"keys\""));
  EXPECT_THAT(ParseError("keys = 5\n"), HasSubstr("tenants.toml:1: keys must be an array"));
}

TEST(FormatConfig, RoundTripsEveryField) {
  const Config c = Example();
  const std::string text = FormatConfig(c);
  auto parsed = ParseConfig(text, "tenants.toml");
  ASSERT_TRUE(parsed) << parsed.error().message << "\n" << text;
  EXPECT_EQ(*parsed, c) << text;
  EXPECT_EQ(FormatConfig(*parsed), text);  // deterministic
  EXPECT_THAT(text, HasSubstr("[tenants.\"beta.team-1_x\"]\n"));
  EXPECT_THAT(text, HasSubstr("[tenants.acme.models.\"stories260K\"]\noutput_tpm = 5000\n"));
  EXPECT_THAT(text, HasSubstr("weight = 2.0\n"));
  EXPECT_THAT(text, HasSubstr("ember tenants"));  // the header says who edits the file
}

TEST(FormatConfig, RoundTripsAwkwardWeights) {
  for (double w : {1e-300, 0.1, 1.0 / 3, 123456789.125, 1e20, 4.9e-324}) {
    Config c;
    c.tenants.push_back(Named("a", w));
    auto parsed = ParseConfig(FormatConfig(c), "f");
    ASSERT_TRUE(parsed) << w << ": " << parsed.error().message;
    EXPECT_EQ(parsed->tenants[0].weight, w);
  }
}

TEST(FormatConfig, BudgetsRoundTripToTheMicrodollar) {
  Config c;
  c.tenants.push_back(Named("a", 1.0));
  c.tenants[0].hard_budget = 10'000'001;  // $10.000001: a double would not keep it
  c.tenants[0].soft_budget = 8'500'000;
  c.tenants[0].budget_window = BudgetWindow::kDay;
  const std::string text = FormatConfig(c);
  EXPECT_THAT(text, HasSubstr("hard_budget = 10.000001\nsoft_budget = 8.50\n"
                              "budget_window = \"day\"\n"));
  auto parsed = ParseConfig(text, "f");
  ASSERT_TRUE(parsed) << parsed.error().message;
  EXPECT_EQ(*parsed, c);
  auto bad = ParseConfig("[tenants.a]\nhard_budget = 0.0000001\n", "t.toml");
  ASSERT_FALSE(bad);
  EXPECT_THAT(bad.error().message, HasSubstr("t.toml:2:"));
  EXPECT_FALSE(ParseConfig("[tenants.a]\nbudget_window = \"week\"\n", "t.toml"));
  EXPECT_FALSE(ParseConfig("[tenants.a]\nhard_budget = \"10\"\n", "t.toml"));
  EXPECT_THAT(TenantsJson(c), HasSubstr("\"hard_budget_microdollars\":10000001"));
}

TEST(FormatConfig, EmptyConfigIsOnlyTheHeader) {
  const std::string text = FormatConfig(Config{});
  EXPECT_EQ(text.find('['), std::string::npos);
  auto parsed = ParseConfig(text, "f");
  ASSERT_TRUE(parsed);
  EXPECT_EQ(*parsed, Config{});
}

TEST(ValidateConfig, ChecksWhatParseChecks) {
  EXPECT_TRUE(ValidateConfig(Example()));
  Config c = Example();
  c.tenants[0].weight = 0;
  EXPECT_FALSE(ValidateConfig(c));
  c = Example();
  c.tenants[1].limits.rpm = 0;
  EXPECT_THAT(ValidateConfig(c).error().message, HasSubstr("omit it for no limit"));
  c = Example();
  c.keys[1].tenant = "nobody";
  EXPECT_THAT(ValidateConfig(c).error().message, HasSubstr("no tenant \"nobody\""));
  c = Example();
  c.keys[1].sha256_hex = c.keys[0].sha256_hex;
  EXPECT_FALSE(ValidateConfig(c));
  c = Example();
  c.tenants.push_back(c.tenants[0]);
  EXPECT_THAT(ValidateConfig(c).error().message, HasSubstr("defined twice"));
  c = Example();
  c.tenants[0].display_name = "line\nbreak";
  EXPECT_FALSE(ValidateConfig(c));
  c = Example();
  c.tenants[0].display_name = "\xff\xfe";  // not UTF-8
  EXPECT_FALSE(ValidateConfig(c));
}

TEST(Json, KeysJsonHasIdTenantCreatedAndNeverTheHash) {
  const std::string json = KeysJson(Example());
  EXPECT_EQ(json,
            "[{\"id\":\"key_0123456789ab\",\"tenant\":\"acme\",\"created\":1764921600},"
            "{\"id\":\"key_ba9876543210\",\"tenant\":\"beta.team-1_x\",\"created\":0}]");
  EXPECT_EQ(KeysJson(Config{}), "[]");
}

TEST(Json, TenantsJsonEscapesAndListsOnlySetLimits) {
  const std::string json = TenantsJson(Example());
  EXPECT_THAT(json, HasSubstr("{\"name\":\"acme\",\"display_name\":\"Acme Corp\",\"weight\":2.0,"
                              "\"priority\":\"interactive\",\"enabled\":true,\"rpm\":600,"
                              "\"output_tpm\":20000,\"max_tokens\":512,\"models\":{"
                              "\"org/model.v2\":{},\"stories260K\":{\"output_tpm\":5000}}}"));
  EXPECT_THAT(json, HasSubstr("\"display_name\":\"quote \\\" backslash \\\\ tab\\t é 日本 🚀\""));
  EXPECT_THAT(json, HasSubstr("\"priority\":\"batch\",\"enabled\":false,\"models\":{}}"));
  EXPECT_EQ(TenantsJson(Config{}), "[]");
}

class StoreFiles : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("ember_store_test_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  fs::path dir_;
};

TEST_F(StoreFiles, MissingFileIsAnEmptyConfig) {
  auto c = ReadConfigFile(dir_ / "tenants.toml");
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_TRUE(c->empty());
  EXPECT_FALSE(StampOf(dir_ / "tenants.toml"));
}

TEST_F(StoreFiles, UnreadableFileIsAnError) {
  fs::create_directories(dir_ / "tenants.toml");  // a directory where the file should be
  auto c = ReadConfigFile(dir_ / "tenants.toml");
  ASSERT_FALSE(c);
  EXPECT_THAT(c.error().message, HasSubstr("tenants.toml"));
}

TEST_F(StoreFiles, ReadErrorsNameThePath) {
  fs::create_directories(dir_);
  std::ofstream(dir_ / "tenants.toml") << "[tenants.a]\nbogus = 1\n";
  auto c = ReadConfigFile(dir_ / "tenants.toml");
  ASSERT_FALSE(c);
  EXPECT_THAT(c.error().message, HasSubstr((dir_ / "tenants.toml").string() + ":2: unknown key"));
}

TEST_F(StoreFiles, EditCreatesTheDirectoryAndWritesAtomically) {
  auto ok = EditConfig(dir_, [](Config& c) -> Status {
    c = Example();
    return {};
  });
  ASSERT_TRUE(ok) << ok.error().message;
  auto c = ReadConfigFile(ConfigPath(dir_));
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(*c, Example());
  EXPECT_FALSE(fs::exists(dir_ / "tenants.toml.tmp"));
  EXPECT_TRUE(fs::exists(dir_ / "tenants.toml.lock"));
}

TEST_F(StoreFiles, FailedOrInvalidEditsLeaveTheFileAlone) {
  ASSERT_TRUE(EditConfig(dir_, [](Config& c) -> Status {
    c = Example();
    return {};
  }));
  const auto stamp = StampOf(ConfigPath(dir_));
  ASSERT_TRUE(stamp);
  auto refused = EditConfig(dir_, [](Config& c) -> Status {
    c.tenants.clear();
    return NotFound("no such tenant");
  });
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, ErrorCode::kNotFound);
  auto invalid = EditConfig(dir_, [](Config& c) -> Status {
    c.tenants[0].weight = -1;
    return {};
  });
  ASSERT_FALSE(invalid);
  EXPECT_EQ(invalid.error().code, ErrorCode::kInvalidArgument);
  EXPECT_EQ(StampOf(ConfigPath(dir_)), stamp);
  EXPECT_EQ(*ReadConfigFile(ConfigPath(dir_)), Example());
}

TEST_F(StoreFiles, EveryWriteChangesTheStamp) {
  auto set_rpm = [&](std::int64_t rpm) {
    return EditConfig(dir_, [rpm](Config& c) -> Status {
      if (c.tenants.empty()) c.tenants.push_back(Named("a"));
      c.tenants[0].limits.rpm = rpm;
      return {};
    });
  };
  ASSERT_TRUE(set_rpm(10));
  const auto first = StampOf(ConfigPath(dir_));
  ASSERT_TRUE(set_rpm(20));  // same size, likely the same mtime tick: the inode still differs
  const auto second = StampOf(ConfigPath(dir_));
  ASSERT_TRUE(first && second);
  EXPECT_NE(*first, *second);
  ASSERT_TRUE(set_rpm(20));  // no change: no write, no reload
  EXPECT_EQ(StampOf(ConfigPath(dir_)), second);
}

TEST_F(StoreFiles, ConcurrentEditsLoseNothing) {
  ASSERT_TRUE(EditConfig(dir_, [](Config& c) -> Status {
    c.tenants.push_back(Named("counter"));
    c.tenants[0].limits.rpm = 1;
    return {};
  }));
  constexpr int kThreads = 2, kIncrements = 50;
  std::vector<std::thread> threads;
  std::vector<int> failures(kThreads);
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kIncrements; ++i) {
        auto ok = EditConfig(dir_, [](Config& c) -> Status {
          ++*c.tenants[0].limits.rpm;
          return {};
        });
        if (!ok) ++failures[t];
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(failures, std::vector<int>(kThreads, 0));
  auto c = ReadConfigFile(ConfigPath(dir_));
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->tenants[0].limits.rpm, 1 + kThreads * kIncrements);
}

TEST_F(StoreFiles, KeepsThePermissionsOfAnExistingFile) {
  fs::create_directories(dir_);
  std::ofstream(dir_ / "tenants.toml") << "";
  fs::permissions(dir_ / "tenants.toml", fs::perms::owner_read | fs::perms::owner_write);
  ASSERT_TRUE(EditConfig(dir_, [](Config& c) -> Status {
    c.tenants.push_back(Named("a"));
    return {};
  }));
  EXPECT_EQ(fs::status(dir_ / "tenants.toml").permissions() & fs::perms::all,
            fs::perms::owner_read | fs::perms::owner_write);
}

}  // namespace
}  // namespace ember::tenancy
