#include "bench/coldstart.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>

#include "bench/child_process.h"

namespace ember::bench {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Pair;

TEST(ParseListeningPortTest, FindsThePortInEmbersLogLine) {
  EXPECT_EQ(ParseListeningPort("2026-11-27T04:00:00.123Z info listening on http://127.0.0.1:4711"),
            4711);
  EXPECT_EQ(ParseListeningPort("listening on http://[::1]:8080\r"), 8080);
  EXPECT_EQ(ParseListeningPort("listening on http://localhost:80/ now"), 80);
}

TEST(ParseListeningPortTest, RejectsOtherLines) {
  EXPECT_EQ(ParseListeningPort("startup: metadata 1 us"), std::nullopt);
  EXPECT_EQ(ParseListeningPort("listening on http://127.0.0.1:"), std::nullopt);
  EXPECT_EQ(ParseListeningPort("listening on http://127.0.0.1:99999"), std::nullopt);
  EXPECT_EQ(ParseListeningPort("listening on http://127.0.0.1:0"), std::nullopt);
  EXPECT_EQ(ParseListeningPort("listening on http://127.0.0.1:12ab"), std::nullopt);
}

TEST(ParseStartupPhasesTest, ReadsEveryPhaseWhateverItsName) {
  const auto phases = ParseStartupPhases(
      "# HELP ember_startup_seconds Time spent in each start-up phase\n"
      "# TYPE ember_startup_seconds gauge\n"
      "ember_startup_seconds{phase=\"metadata\"} 0.0125\n"
      "ember_startup_seconds{phase=\"repack_cache\"} 1.5e-03\n"
      "ember_startup_seconds{model=\"m\",phase=\"total\"} 0.25\n"
      "ember_startup_seconds_other{phase=\"weights\"} 9\n"
      "vllm:num_requests_running 0\n"
      "ember_startup_seconds{phase=\"broken\"} nan-ish\n"
      "ember_startup_seconds{phase=\"unterminated} 1\n"
      "ember_startup_seconds{phase=\"context\"} 1\n"
      "ember_startup_seconds{phase=\"context\"} 2");  // repeated; no trailing newline
  EXPECT_THAT(phases, ElementsAre(Pair("metadata", 0.0125), Pair("repack_cache", 0.0015),
                                  Pair("total", 0.25), Pair("context", 2.0)));
  EXPECT_TRUE(ParseStartupPhases("").empty());
}

TEST(MedianTest, OddEvenAndEmpty) {
  EXPECT_EQ(Median({3, 1, 2}), 2.0);
  EXPECT_EQ(Median({4, 1, 3, 2}), 2.5);
  EXPECT_EQ(Median({7}), 7.0);
  EXPECT_EQ(Median({}), std::nullopt);
}

ColdStartRun Ok(ServerKind kind, int index, double ready, double first, double rss) {
  ColdStartRun run;
  run.server = kind;
  run.index = index;
  run.exec_to_ready_s = ready;
  run.exec_to_first_token_s = first;
  run.peak_rss_mib = rss;
  if (kind == ServerKind::kEmber) run.phases_s = {{"weights", ready / 2}, {"total", ready}};
  return run;
}

ColdStartReport SampleReport() {
  ColdStartReport report;
  report.options.model_path = "/m/tiny.gguf";
  report.options.runs = 3;
  report.options.threads = 2;
  report.options.llama_server_bin = "/bin/llama-server";
  report.runs = {Ok(ServerKind::kEmber, 1, 0.010, 0.020, 10),
                 Ok(ServerKind::kLlamaServer, 1, 0.100, 0.200, 30),
                 Ok(ServerKind::kEmber, 2, 0.030, 0.040, 12),
                 Ok(ServerKind::kLlamaServer, 2, 0.300, 0.400, 50)};
  ColdStartRun failed;
  failed.server = ServerKind::kEmber;
  failed.index = 3;
  failed.error = "exited with status 1 before it was ready; last output:\n\"bad\" model";
  report.runs.push_back(failed);
  return report;
}

TEST(ColdStartReportTest, JsonHasPerRunValuesAndMediansOfSuccessfulRuns) {
  const ColdStartReport report = SampleReport();
  EXPECT_EQ(report.failed(), 1);
  const std::string json = FormatColdStartJson(report);
  EXPECT_THAT(json, HasSubstr("\"failed_runs\":1"));
  EXPECT_THAT(json, HasSubstr("\"ember\":{\"bin\":\"\",\"runs_ok\":2,\"runs_failed\":1,"
                              "\"median\":{\"exec_to_ready_s\":0.02,"
                              "\"exec_to_first_token_s\":0.03,\"peak_rss_mib\":11,"
                              "\"decode_tokens_per_s\":null,"
                              "\"phases_s\":{\"weights\":0.01,\"total\":0.02}}"));
  EXPECT_THAT(json, HasSubstr("\"llama-server\":{\"bin\":\"/bin/llama-server\",\"runs_ok\":2,"
                              "\"runs_failed\":0,\"median\":{\"exec_to_ready_s\":0.2,"));
  EXPECT_THAT(json, HasSubstr("{\"run\":3,\"ok\":false,\"error\":\"exited with status 1 before "
                              "it was ready; last output:\\n\\\"bad\\\" model\"}"));
  EXPECT_THAT(json, HasSubstr("{\"run\":1,\"ok\":true,\"exec_to_ready_s\":0.01,"));
  EXPECT_EQ(json.back(), '\n');
}

TEST(ColdStartReportTest, TableShowsMediansPhasesAndFailures) {
  const std::string table = FormatColdStartTable(SampleReport());
  EXPECT_THAT(table, HasSubstr("ember         2/3            20.0                  30.0"));
  EXPECT_THAT(table, HasSubstr("llama-server  2/2           200.0                 300.0"));
  EXPECT_THAT(table, HasSubstr("ember phases, median ms: weights 10.0, total 20.0"));
  EXPECT_THAT(table, HasSubstr("failed runs:\n  ember run 3: exited with status 1"));
}

TEST(ValidateColdStartOptionsTest, NamesTheMissingModel) {
  ColdStartOptions options;
  options.model_path = "/nonexistent/model.gguf";
  auto status = ValidateColdStartOptions(options);
  ASSERT_FALSE(status);
  EXPECT_EQ(status.error().message, "model file not found: /nonexistent/model.gguf");
  options.model_path = "/proc/self/exe";
  options.llama_server_bin = "/nonexistent/llama-server";
  status = ValidateColdStartOptions(options);
  ASSERT_FALSE(status);
  EXPECT_THAT(status.error().message, HasSubstr("--llama-server"));
}

TEST(ChildProcessTest, MatchesAnOutputLineAndStopsTheChild) {
  auto child = ChildProcess::Start(
      {"/bin/sh", "-c",
       "echo starting; echo listening on http://127.0.0.1:4242 >&2; exec sleep 30"},
      [](std::string_view line) { return ParseListeningPort(line); });
  ASSERT_TRUE(child) << child.error().message;
  EXPECT_EQ((*child)->WaitForMatch(std::chrono::steady_clock::now() + std::chrono::seconds(10)),
            4242);
  EXPECT_GT((*child)->PeakRssBytes(), 0);
  EXPECT_EQ((*child)->ExitIfEnded(), std::nullopt);
  EXPECT_EQ((*child)->Stop(std::chrono::seconds(5)), "killed by signal 15");
  EXPECT_EQ((*child)->LastLines(), "starting\nlistening on http://127.0.0.1:4242");
}

TEST(ChildProcessTest, ReportsAProgramThatCannotRun) {
  auto child = ChildProcess::Start({"/nonexistent/server"}, nullptr);
  ASSERT_FALSE(child);
  EXPECT_THAT(child.error().message, HasSubstr("cannot run /nonexistent/server"));
}

// A fake "ember" that fails at start-up: the run reports its exit and its last output.
TEST(RunColdStartTest, AServerThatExitsEarlyFailsTheRunWithItsOutput) {
  char dir[] = "/tmp/coldstart_test.XXXXXX";
  ASSERT_NE(::mkdtemp(dir), nullptr);
  const std::string script = std::string(dir) + "/ember", model = std::string(dir) + "/m.gguf";
  std::ofstream(script) << "#!/bin/sh\necho 'error: cannot load the model' >&2\nexit 3\n";
  std::ofstream(model) << "GGUF";
  ASSERT_EQ(::chmod(script.c_str(), 0755), 0);
  ColdStartOptions options;
  options.model_path = model;
  options.ember_bin = script;
  options.runs = 2;
  options.timeout = std::chrono::seconds(10);
  auto report = RunColdStart(options);
  ASSERT_TRUE(report) << report.error().message;
  ASSERT_EQ(report->runs.size(), 2u);
  EXPECT_EQ(report->failed(), 2);
  EXPECT_THAT(report->runs[0].error, HasSubstr("exited with status 3"));
  EXPECT_THAT(report->runs[0].error, HasSubstr("error: cannot load the model"));
  std::remove(script.c_str());
  std::remove(model.c_str());
  ::rmdir(dir);
}

}  // namespace
}  // namespace ember::bench
