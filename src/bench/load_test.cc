#include "bench/load.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>

#include "bench/fake_server_test_util.h"
#include "bench/sample.h"

namespace ember::bench {
namespace {

using ::testing::AllOf;
using testing::FakeReply;
using testing::FakeServer;
using ::testing::HasSubstr;
using testing::JsonReply;
using ::testing::Pair;
using testing::SseReply;
using testing::SseReplyUntilClose;
using ::testing::UnorderedElementsAre;

const std::vector<std::string> kThreeTokenStream = {
    R"({"choices":[{"index":0,"text":"Once"}]})",
    R"({"choices":[{"index":0,"text":" upon"}]})",
    R"({"choices":[{"index":0,"text":" a"}]})",
    R"({"choices":[{"index":0,"text":"","finish_reason":"length"}]})",
    R"({"choices":[],"usage":{"prompt_tokens":7,"completion_tokens":3,"total_tokens":10}})",
    "[DONE]",
};

LoadOptions OptionsFor(const FakeServer& server, int concurrency, int requests) {
  LoadOptions options;
  options.port = server.port();
  options.concurrency = concurrency;
  options.requests = requests;
  options.max_tokens = 3;
  options.timeout = std::chrono::seconds(10);
  options.label = "fake";
  return options;
}

TEST(RunLoadTest, StreamedRunCountsUsageTokensAndLatencies) {
  FakeServer server([](int, const std::string&) {
    return SseReply(kThreeTokenStream, std::chrono::milliseconds(20));
  });
  auto report = RunLoad(OptionsFor(server, 3, 12));
  ASSERT_TRUE(report) << report.error().message;
  EXPECT_EQ(report->requests_ok, 12);
  EXPECT_EQ(report->requests_failed, 0);
  EXPECT_TRUE(report->errors_by_status.empty());
  EXPECT_EQ(report->output_tokens, 36);
  EXPECT_EQ(report->prompt_tokens, 84);
  // The fake server waits 20 ms before each of the 7 pieces after the head: the first
  // content chunk cannot arrive sooner than that, nor the whole reply sooner than 140 ms.
  // Single gaps can be shortened by scheduling jitter, so ITL is only checked loosely.
  EXPECT_GE(report->ttft_p50.count(), 0.020);
  EXPECT_GE(report->e2e_p50.count(), 0.140);
  EXPECT_GT(report->itl_p50.count(), 0);
  EXPECT_GE(report->itl_p99.count(), 0.010);
  EXPECT_GE(report->e2e_p99, report->e2e_p50);
  EXPECT_GE(report->e2e_p50, report->ttft_p50);
  EXPECT_GT(report->output_tokens_per_second, 0);
  // Keep-alive: three workers, three connections for twelve requests.
  EXPECT_EQ(server.connections(), 3);
}

TEST(RunLoadTest, NonSuccessStatusesAreCountedAsErrors) {
  FakeServer server([](int index, const std::string&) -> FakeReply {
    if (index % 4 == 3) {
      return JsonReply(429, R"({"error":{"code":429,"message":"rate limited"}})");
    }
    return SseReply(kThreeTokenStream, std::chrono::milliseconds(0));
  });
  auto report = RunLoad(OptionsFor(server, 2, 8));
  ASSERT_TRUE(report) << report.error().message;
  EXPECT_EQ(report->requests_ok, 6);
  EXPECT_EQ(report->requests_failed, 2);
  EXPECT_THAT(report->errors_by_status, UnorderedElementsAre(Pair(429, 2)));
  EXPECT_EQ(report->output_tokens, 18);
  EXPECT_THAT(report->first_error, HasSubstr("HTTP 429"));
  EXPECT_THAT(FormatJson(*report), HasSubstr(R"("errors_by_status":{"429":2})"));
}

TEST(RunLoadTest, StreamWithoutUsageCountsContentChunksAndReconnectsAfterClose) {
  FakeServer server([](int, const std::string&) {
    return SseReplyUntilClose({R"({"choices":[{"delta":{"role":"assistant"}}]})",
                               R"({"choices":[{"delta":{"content":"Hi"}}]})",
                               R"({"choices":[{"delta":{"content":" there"}}]})", "[DONE]"});
  });
  LoadOptions options = OptionsFor(server, 2, 6);
  options.endpoint = "/v1/chat/completions";
  auto report = RunLoad(options);
  ASSERT_TRUE(report) << report.error().message;
  EXPECT_EQ(report->requests_ok, 6);
  EXPECT_EQ(report->output_tokens, 12);
  EXPECT_EQ(server.connections(), 6);
  for (const std::string& body : server.bodies()) {
    EXPECT_THAT(body, HasSubstr(R"("messages":[{"role":"user","content":")"));
  }
}

TEST(RunLoadTest, NonStreamedBodyUsesItsUsage) {
  FakeServer server([](int, const std::string&) {
    return JsonReply(200, R"({"choices":[{"text":"a b c d e"}],)"
                          R"("usage":{"prompt_tokens":4,"completion_tokens":5}})");
  });
  LoadOptions options = OptionsFor(server, 1, 4);
  options.stream = false;
  auto report = RunLoad(options);
  ASSERT_TRUE(report) << report.error().message;
  EXPECT_EQ(report->requests_ok, 4);
  EXPECT_EQ(report->output_tokens, 20);
  EXPECT_EQ(report->prompt_tokens, 16);
  EXPECT_EQ(report->itl_p50.count(), 0);
  EXPECT_EQ(server.connections(), 1);
  for (const std::string& body : server.bodies()) {
    EXPECT_THAT(body, AllOf(HasSubstr(R"("stream":false)"), HasSubstr(R"("max_tokens":3)")));
  }
}

TEST(RunLoadTest, RetriesOnceWhenAKeptAliveConnectionWasClosedSilently) {
  // The server drops the connection after each reply without saying "Connection: close", as
  // an idle-timeout would; the client only notices when its next request gets no answer.
  FakeServer server([](int, const std::string&) {
    FakeReply reply =
        JsonReply(200, R"({"choices":[{"text":"a"}],"usage":{"completion_tokens":1}})");
    reply.close = true;
    return reply;
  });
  LoadOptions options = OptionsFor(server, 1, 5);
  options.stream = false;
  auto report = RunLoad(options);
  ASSERT_TRUE(report) << report.error().message;
  EXPECT_EQ(report->requests_ok, 5);
  EXPECT_EQ(report->requests_failed, 0) << report->first_error;
  EXPECT_EQ(report->output_tokens, 5);
  EXPECT_EQ(server.connections(), 5);
}

TEST(RunLoadTest, ErrorEventInsideStreamFailsTheRequest) {
  FakeServer server([](int, const std::string&) {
    return SseReply({R"({"choices":[{"text":"x"}]})", R"({"error":{"message":"engine died"}})"},
                    std::chrono::milliseconds(0));
  });
  auto report = RunLoad(OptionsFor(server, 1, 2));
  ASSERT_TRUE(report) << report.error().message;
  EXPECT_EQ(report->requests_failed, 2);
  EXPECT_THAT(report->errors_by_status, UnorderedElementsAre(Pair(0, 2)));
  EXPECT_THAT(report->first_error, HasSubstr("engine died"));
}

TEST(RunLoadTest, SendsTheSamePromptsToEveryServer) {
  auto handler = [](int, const std::string&) {
    return SseReply(kThreeTokenStream, std::chrono::milliseconds(0));
  };
  FakeServer first(handler);
  FakeServer second(handler);
  LoadOptions options = OptionsFor(first, 4, 10);
  options.model = "stories";
  ASSERT_TRUE(RunLoad(options));
  options.port = second.port();
  options.concurrency = 1;
  ASSERT_TRUE(RunLoad(options));
  std::vector<std::string> a = first.bodies();
  std::vector<std::string> b = second.bodies();
  std::sort(a.begin(), a.end());
  std::sort(b.begin(), b.end());
  EXPECT_EQ(a, b);
  ASSERT_EQ(a.size(), 10u);
  EXPECT_THAT(a[0], AllOf(HasSubstr(R"("model":"stories")"), HasSubstr(R"("stream":true)"),
                          HasSubstr(R"("stream_options":{"include_usage":true})")));
}

TEST(RunLoadTest, RefusedConnectionsAreTransportErrors) {
  // Bind and close a socket to find a port nothing listens on.
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  ::close(fd);
  LoadOptions options;
  options.port = ntohs(addr.sin_port);
  options.concurrency = 2;
  options.requests = 4;
  auto report = RunLoad(options);
  ASSERT_TRUE(report) << report.error().message;
  EXPECT_EQ(report->requests_ok, 0);
  EXPECT_THAT(report->errors_by_status, UnorderedElementsAre(Pair(0, 4)));
  EXPECT_THAT(report->first_error, HasSubstr("connect"));
}

TEST(RunLoadTest, RejectsInvalidOptions) {
  LoadOptions options;
  options.concurrency = 0;
  EXPECT_EQ(RunLoad(options).error().param, "concurrency");
  options = {};
  options.prompt_min_words = 10;
  options.prompt_max_words = 5;
  EXPECT_EQ(RunLoad(options).error().param, "prompt_max_words");
  options = {};
  options.endpoint = "v1/completions";
  EXPECT_EQ(RunLoad(options).error().code, ErrorCode::kInvalidArgument);
}

TEST(SummarizeTest, AggregatesSamplesAndFormats) {
  std::vector<RequestSample> samples(3);
  samples[0].ok = samples[1].ok = true;
  samples[0].status = samples[1].status = 200;
  samples[0].completion_tokens = 10;
  samples[1].completion_tokens = 30;
  samples[0].ttft = Seconds(0.1);
  samples[1].ttft = Seconds(0.3);
  samples[0].e2e = Seconds(1);
  samples[1].e2e = Seconds(2);
  samples[0].itl_seconds = {0.01, 0.02};
  samples[2].status = 503;
  samples[2].error = "HTTP 503: busy";
  LoadOptions options;
  options.label = "ember";
  const LoadReport report = Summarize(options, samples, Seconds(4));
  EXPECT_EQ(report.requests_ok, 2);
  EXPECT_EQ(report.requests_failed, 1);
  EXPECT_EQ(report.output_tokens, 40);
  EXPECT_DOUBLE_EQ(report.output_tokens_per_second, 10);
  EXPECT_DOUBLE_EQ(report.requests_per_second, 0.5);
  EXPECT_DOUBLE_EQ(report.ttft_p50.count(), 0.1);
  EXPECT_DOUBLE_EQ(report.ttft_p99.count(), 0.3);
  EXPECT_DOUBLE_EQ(report.itl_p99.count(), 0.02);
  EXPECT_EQ(FormatJson(report),
            R"({"label":"ember","endpoint":"/v1/completions","concurrency":1,"requests":32,)"
            R"("max_tokens":64,"stream":true,"requests_ok":2,"requests_failed":1,)"
            R"("errors_by_status":{"503":1},"first_error":"HTTP 503: busy","wall_s":4,)"
            R"("requests_per_s":0.5,"output_tokens":40,"output_tokens_per_s":10,)"
            R"("prompt_tokens":0,"ttft_p50_s":0.1,"ttft_p99_s":0.3,"itl_p50_s":0.01,)"
            R"("itl_p99_s":0.02,"e2e_p50_s":1,"e2e_p99_s":2})"
            "\n");
  const std::string table = FormatTable(report);
  EXPECT_THAT(table, AllOf(HasSubstr("[ember]"), HasSubstr("2 ok, 1 failed"), HasSubstr("503: 1"),
                           HasSubstr("40 out (10.0 tok/s)")));
}

}  // namespace
}  // namespace ember::bench
