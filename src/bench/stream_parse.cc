#include "bench/stream_parse.h"

#include <algorithm>
#include <charconv>
#include <cmath>

namespace ember::bench {
namespace {

constexpr std::size_t kMaxLine = 4096;  // a chunk-size or trailer line longer than this is bogus

std::string_view StripCr(std::string_view line) {
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  return line;
}

bool IsSpace(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

std::size_t SkipSpace(std::string_view text, std::size_t pos) {
  while (pos < text.size() && IsSpace(text[pos])) ++pos;
  return pos;
}

// Positions of the values of every `"key":` in `json`, in order (a string value that merely
// contains the key's text is skipped because it is not followed by a colon).
std::vector<std::size_t> ValuePositions(std::string_view json, std::string_view key) {
  std::vector<std::size_t> out;
  std::string quoted(1, '"');
  quoted.append(key).push_back('"');
  for (std::size_t at = json.find(quoted); at != std::string_view::npos;
       at = json.find(quoted, at + 1)) {
    std::size_t pos = SkipSpace(json, at + quoted.size());
    if (pos < json.size() && json[pos] == ':') out.push_back(SkipSpace(json, pos + 1));
  }
  return out;
}

}  // namespace

Status ChunkedDecoder::Feed(std::string_view input, std::string& out) {
  while (!input.empty() && state_ != State::kDone) {
    if (state_ == State::kData) {
      const std::size_t take = std::min(remaining_, input.size());
      out.append(input.substr(0, take));
      input.remove_prefix(take);
      remaining_ -= take;
      if (remaining_ == 0) state_ = State::kDataEnd;
      continue;
    }
    const std::size_t newline = input.find('\n');
    const std::size_t take = newline == std::string_view::npos ? input.size() : newline + 1;
    line_.append(input.substr(0, take));
    input.remove_prefix(take);
    if (line_.size() > kMaxLine) return Unavailable("chunked body: framing line too long");
    if (line_.back() != '\n') continue;
    std::string line = std::move(line_);
    line_.clear();
    line.pop_back();
    if (auto status = OnLine(StripCr(line)); !status) return status;
  }
  return {};
}

Status ChunkedDecoder::OnLine(std::string_view line) {
  switch (state_) {
    case State::kSizeLine: {
      line = line.substr(0, line.find(';'));
      while (!line.empty() && IsSpace(line.back())) line.remove_suffix(1);
      std::size_t size = 0;
      auto [end, ec] = std::from_chars(line.data(), line.data() + line.size(), size, 16);
      if (line.empty() || ec != std::errc() || end != line.data() + line.size()) {
        return Unavailable("chunked body: bad chunk size line '" + std::string(line) + "'");
      }
      remaining_ = size;
      state_ = size == 0 ? State::kTrailer : State::kData;
      return {};
    }
    case State::kDataEnd:
      if (!line.empty()) return Unavailable("chunked body: missing CRLF after chunk data");
      state_ = State::kSizeLine;
      return {};
    case State::kTrailer:
      if (line.empty()) state_ = State::kDone;
      return {};
    case State::kData:
    case State::kDone:
      return {};
  }
  return {};
}

std::vector<std::string> SseParser::Feed(std::string_view bytes) {
  std::vector<std::string> events;
  while (!bytes.empty()) {
    const std::size_t newline = bytes.find('\n');
    if (newline == std::string_view::npos) {
      partial_line_.append(bytes);
      break;
    }
    partial_line_.append(bytes.substr(0, newline));
    bytes.remove_prefix(newline + 1);
    std::string line = std::move(partial_line_);
    partial_line_.clear();
    OnLine(StripCr(line), events);
  }
  return events;
}

void SseParser::OnLine(std::string_view line, std::vector<std::string>& events) {
  if (line.empty()) {
    if (has_data_) events.push_back(std::move(data_));
    data_.clear();
    has_data_ = false;
    return;
  }
  if (!line.starts_with("data:")) return;  // comments, event:, id:, retry:
  line.remove_prefix(5);
  if (line.starts_with(' ')) line.remove_prefix(1);
  if (has_data_) data_ += '\n';
  data_.append(line);
  has_data_ = true;
}

std::optional<std::string> SseParser::Finish() {
  std::vector<std::string> events;
  if (!partial_line_.empty()) {
    std::string line = std::move(partial_line_);
    partial_line_.clear();
    OnLine(StripCr(line), events);
  }
  OnLine("", events);
  if (events.empty()) return std::nullopt;
  return std::move(events.front());
}

std::optional<std::int64_t> FindIntField(std::string_view json, std::string_view key) {
  for (std::size_t pos : ValuePositions(json, key)) {
    std::int64_t value = 0;
    auto [end, ec] = std::from_chars(json.data() + pos, json.data() + json.size(), value);
    if (ec == std::errc()) return value;
  }
  return std::nullopt;
}

bool HasNonEmptyStringField(std::string_view json, std::string_view key) {
  for (std::size_t pos : ValuePositions(json, key)) {
    if (pos + 1 < json.size() && json[pos] == '"' && json[pos + 1] != '"') return true;
  }
  return false;
}

ChunkInfo InspectChunk(std::string_view json) {
  ChunkInfo info;
  const std::size_t start = SkipSpace(json, 0);
  info.is_error = json.substr(start, 1) == "{" &&
                  json.substr(SkipSpace(json, start + 1)).starts_with("\"error\"");
  info.has_content =
      HasNonEmptyStringField(json, "text") || HasNonEmptyStringField(json, "content");
  info.completion_tokens = FindIntField(json, "completion_tokens");
  info.prompt_tokens = FindIntField(json, "prompt_tokens");
  return info;
}

double Percentile(std::vector<double> values, double p) {
  if (values.empty()) return 0.0;
  std::sort(values.begin(), values.end());
  const double rank = std::ceil(std::clamp(p, 0.0, 100.0) / 100.0 * values.size());
  const std::size_t index = rank < 1 ? 0 : static_cast<std::size_t>(rank) - 1;
  return values[std::min(index, values.size() - 1)];
}

}  // namespace ember::bench
