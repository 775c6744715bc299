// Incremental decoders for what an OpenAI-compatible server sends back: HTTP/1.1 chunked
// framing, Server-Sent Events, and the few JSON fields the load generator reads. The JSON
// handling is deliberately minimal (key lookup, no full parse). Pure; one instance per
// response, used by one worker thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/error.h"

namespace ember::bench {

// Decodes a `Transfer-Encoding: chunked` body fed in arbitrary pieces.
class ChunkedDecoder {
 public:
  // Appends the payload bytes contained in `input` to `out`. Bytes after the final chunk's
  // trailer are ignored. Fails on malformed framing.
  [[nodiscard]] Status Feed(std::string_view input, std::string& out);
  // True once the terminating zero-size chunk and its trailer have been consumed.
  bool done() const { return state_ == State::kDone; }

 private:
  enum class State { kSizeLine, kData, kDataEnd, kTrailer, kDone };
  [[nodiscard]] Status OnLine(std::string_view line);

  State state_ = State::kSizeLine;
  std::string line_;
  std::size_t remaining_ = 0;
};

// Splits an SSE stream into event payloads: the "data:" lines of one event (joined by '\n'),
// dispatched at the blank line that ends the event. Other fields and comments are ignored.
class SseParser {
 public:
  // Returns the payloads of the events completed by `bytes`, in order.
  std::vector<std::string> Feed(std::string_view bytes);
  // Dispatches an event left unterminated at the end of the stream, if any.
  std::optional<std::string> Finish();

 private:
  void OnLine(std::string_view line, std::vector<std::string>& events);

  std::string partial_line_;
  std::string data_;
  bool has_data_ = false;
};

// What one OpenAI response object (a stream chunk or a whole non-streamed body) carries.
struct ChunkInfo {
  // choices[0].text, delta.content or message.content is a non-empty string.
  bool has_content = false;
  // The object is an error envelope ({"error": ...}).
  bool is_error = false;
  std::optional<std::int64_t> completion_tokens;
  std::optional<std::int64_t> prompt_tokens;
};
ChunkInfo InspectChunk(std::string_view json);

// The integer value of the first `"key": <integer>` in `json`, if any.
std::optional<std::int64_t> FindIntField(std::string_view json, std::string_view key);

// True when some `"key": "<non-empty string>"` appears in `json`.
bool HasNonEmptyStringField(std::string_view json, std::string_view key);

// Nearest-rank percentile (p in [0, 100]) of `values`; 0 when empty.
double Percentile(std::vector<double> values, double p);

}  // namespace ember::bench
