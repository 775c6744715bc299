#include "bench/stream_parse.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "bench/http_client.h"

namespace ember::bench {
namespace {

using ::testing::ElementsAre;

constexpr std::string_view kChunked =
    "7\r\ndata: {\r\n"
    "1A;ext=1\r\nabcdefghijklmnopqrstuvwxyz\r\n"
    "0\r\nTrailer: x\r\n\r\n"
    "ignored";

TEST(ChunkedDecoderTest, DecodesWholeBody) {
  ChunkedDecoder decoder;
  std::string out;
  ASSERT_TRUE(decoder.Feed(kChunked, out));
  EXPECT_EQ(out, "data: {abcdefghijklmnopqrstuvwxyz");
  EXPECT_TRUE(decoder.done());
}

TEST(ChunkedDecoderTest, DecodesBodyFedOneByteAtATime) {
  ChunkedDecoder decoder;
  std::string out;
  for (char c : kChunked) {
    ASSERT_TRUE(decoder.Feed(std::string_view(&c, 1), out));
  }
  EXPECT_EQ(out, "data: {abcdefghijklmnopqrstuvwxyz");
  EXPECT_TRUE(decoder.done());
}

TEST(ChunkedDecoderTest, NotDoneBeforeTerminatingChunk) {
  ChunkedDecoder decoder;
  std::string out;
  ASSERT_TRUE(decoder.Feed("3\r\nabc\r\n", out));
  EXPECT_EQ(out, "abc");
  EXPECT_FALSE(decoder.done());
}

TEST(ChunkedDecoderTest, RejectsMalformedFraming) {
  std::string out;
  ChunkedDecoder bad_size;
  EXPECT_FALSE(bad_size.Feed("zz\r\nabc\r\n", out));
  ChunkedDecoder missing_crlf;
  EXPECT_FALSE(missing_crlf.Feed("3\r\nabcXY\r\n", out));
}

TEST(SseParserTest, SplitsEventsAcrossArbitraryPieces) {
  SseParser parser;
  std::vector<std::string> events;
  const std::string stream =
      ": keep-alive comment\n\n"
      "data: {\"a\":1}\r\n\r\n"
      "event: message\ndata:{\"b\":2}\n\n"
      "data: [DONE]\n\n";
  for (std::size_t i = 0; i < stream.size(); i += 5) {
    for (auto& event : parser.Feed(std::string_view(stream).substr(i, 5))) {
      events.push_back(event);
    }
  }
  EXPECT_THAT(events, ElementsAre("{\"a\":1}", "{\"b\":2}", "[DONE]"));
  EXPECT_EQ(parser.Finish(), std::nullopt);
}

TEST(SseParserTest, JoinsMultiLineDataAndFlushesUnterminatedEvent) {
  SseParser parser;
  EXPECT_THAT(parser.Feed("data: one\ndata: two\n\ndata: tail"), ElementsAre("one\ntwo"));
  EXPECT_EQ(parser.Finish(), "tail");
}

TEST(InspectChunkTest, CompletionChunkWithText) {
  const ChunkInfo info =
      InspectChunk(R"({"id":"c1","object":"text_completion","choices":[{"index":0,"text":" the",)"
                   R"("finish_reason":null}],"usage":null})");
  EXPECT_TRUE(info.has_content);
  EXPECT_FALSE(info.is_error);
  EXPECT_EQ(info.completion_tokens, std::nullopt);
}

TEST(InspectChunkTest, ChatDeltaRoleOnlyAndEmptyContentAreNotContent) {
  EXPECT_FALSE(InspectChunk(R"({"choices":[{"delta":{"role":"assistant"}}]})").has_content);
  EXPECT_FALSE(InspectChunk(R"({"choices":[{"delta":{"content":""}}]})").has_content);
  EXPECT_FALSE(InspectChunk(R"({"choices":[{"delta":{"content":null}}]})").has_content);
  EXPECT_TRUE(InspectChunk(R"({"choices":[{"delta":{"content" : "Hi"}}]})").has_content);
  // A value that merely spells a key is not that key.
  EXPECT_FALSE(InspectChunk(R"({"choices":[{"finish_reason":"text","text":""}]})").has_content);
}

TEST(InspectChunkTest, UsageChunk) {
  const ChunkInfo info = InspectChunk(
      R"({"choices":[],"usage":{"prompt_tokens":17,"completion_tokens": 64,"total_tokens":81}})");
  EXPECT_FALSE(info.has_content);
  EXPECT_EQ(info.completion_tokens, 64);
  EXPECT_EQ(info.prompt_tokens, 17);
}

TEST(InspectChunkTest, ErrorEnvelope) {
  EXPECT_TRUE(InspectChunk(R"( { "error": {"code":500,"message":"boom"}})").is_error);
  EXPECT_FALSE(InspectChunk(R"({"choices":[{"text":"error"}]})").is_error);
}

TEST(PercentileTest, NearestRank) {
  std::vector<double> values;
  for (int i = 100; i >= 1; --i) values.push_back(i);
  EXPECT_EQ(Percentile(values, 50), 50);
  EXPECT_EQ(Percentile(values, 99), 99);
  EXPECT_EQ(Percentile(values, 100), 100);
  EXPECT_EQ(Percentile(values, 0), 1);
  EXPECT_EQ(Percentile({3.0, 1.0, 2.0}, 50), 2.0);
  EXPECT_EQ(Percentile({3.0, 1.0, 2.0}, 99), 3.0);
  EXPECT_EQ(Percentile({7.0}, 50), 7.0);
  EXPECT_EQ(Percentile({}, 99), 0.0);
}

TEST(ParseResponseHeadTest, ReadsStatusAndFraming) {
  auto head = ParseResponseHead(
      "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTRANSFER-ENCODING:  Chunked\r\n");
  ASSERT_TRUE(head);
  EXPECT_EQ(head->status, 200);
  EXPECT_TRUE(head->chunked);
  EXPECT_FALSE(head->close);

  head = ParseResponseHead("HTTP/1.1 429 Too Many Requests\r\nContent-Length: 12\r\n");
  ASSERT_TRUE(head);
  EXPECT_EQ(head->status, 429);
  EXPECT_EQ(head->content_length, 12u);

  head = ParseResponseHead("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n");
  ASSERT_TRUE(head);
  EXPECT_TRUE(head->close);

  head = ParseResponseHead("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n");
  ASSERT_TRUE(head);
  EXPECT_TRUE(head->close);  // no length, not chunked: delimited by close

  EXPECT_FALSE(ParseResponseHead("SSH-2.0-OpenSSH\r\n"));
  EXPECT_FALSE(ParseResponseHead("HTTP/1.1 2x0 OK\r\n"));
}

}  // namespace
}  // namespace ember::bench
