#include "bench/load.h"

#include <atomic>
#include <optional>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "bench/http_client.h"
#include "bench/prompt.h"
#include "bench/sample.h"
#include "bench/stream_parse.h"

namespace ember::bench {
namespace {

constexpr std::size_t kMaxKeptBody = 1 << 20;
constexpr std::size_t kErrorSnippet = 200;

// Printable-ASCII prefix of a response body, for error messages.
std::string Snippet(std::string_view body) {
  std::string out;
  for (char c : body.substr(0, kErrorSnippet)) {
    out += (c >= 0x20 && c < 0x7f) ? c : ' ';
  }
  return out;
}

// Follows one response body as it arrives and timestamps its content chunks.
class ResponseObserver {
 public:
  ResponseObserver(SteadyClock::time_point sent, bool stream) : sent_(sent), stream_(stream) {}

  void OnBody(std::string_view bytes, SteadyClock::time_point now) {
    if (!saw_event_ && body_.size() < kMaxKeptBody) body_.append(bytes);
    if (!stream_) return;
    for (const std::string& event : sse_.Feed(bytes)) OnEvent(event, now);
  }

  // Fills the sample's measurements once the body is complete at `end`.
  void Finish(SteadyClock::time_point end, RequestSample& sample) {
    if (stream_) {
      if (auto event = sse_.Finish()) OnEvent(*event, end);
    }
    if (!saw_event_) OnEvent(body_, end);  // not streamed (or the server ignored "stream")
    sample.e2e = end - sent_;
    if (!content_times_.empty()) sample.ttft = content_times_.front() - sent_;
    for (std::size_t i = 1; i < content_times_.size(); ++i) {
      sample.itl_seconds.push_back(Seconds(content_times_[i] - content_times_[i - 1]).count());
    }
    sample.completion_tokens =
        completion_tokens_.value_or(static_cast<std::int64_t>(content_times_.size()));
    sample.prompt_tokens = prompt_tokens_.value_or(0);
    if (stream_error_) {
      sample.ok = false;
      sample.status = 0;
      sample.error = "error event in stream: " + Snippet(error_event_);
    }
  }

  std::string_view body() const { return body_; }

 private:
  void OnEvent(std::string_view payload, SteadyClock::time_point now) {
    saw_event_ = true;
    if (payload == "[DONE]") return;
    const ChunkInfo info = InspectChunk(payload);
    if (info.is_error && !stream_error_) {
      stream_error_ = true;
      error_event_ = payload;
    }
    if (info.has_content) content_times_.push_back(now);
    if (info.completion_tokens) completion_tokens_ = info.completion_tokens;
    if (info.prompt_tokens) prompt_tokens_ = info.prompt_tokens;
  }

  SteadyClock::time_point sent_;
  bool stream_;
  SseParser sse_;
  bool saw_event_ = false;
  std::string body_;  // kept until the first SSE event: a non-streamed body or an error body
  std::vector<SteadyClock::time_point> content_times_;
  std::optional<std::int64_t> completion_tokens_;
  std::optional<std::int64_t> prompt_tokens_;
  bool stream_error_ = false;
  std::string error_event_;
};

RequestSample RunOne(HttpClient& client, const LoadOptions& options,
                     const RequestBodyOptions& body_options, int index) {
  const std::string body = BuildRequestBody(
      body_options, GeneratePrompt(options.seed, static_cast<std::uint64_t>(index),
                                   options.prompt_min_words, options.prompt_max_words));
  const SteadyClock::time_point sent = SteadyClock::now();
  ResponseObserver observer(sent, options.stream);
  auto status = client.Post(
      options.endpoint, body, sent + options.timeout,
      [&observer](std::string_view bytes) { observer.OnBody(bytes, SteadyClock::now()); });
  const SteadyClock::time_point end = SteadyClock::now();
  RequestSample sample;
  if (!status) {
    sample.error = status.error().message;
    return sample;
  }
  sample.status = *status;
  if (*status < 200 || *status > 299) {
    sample.error = "HTTP " + std::to_string(*status) + ": " + Snippet(observer.body());
    return sample;
  }
  sample.ok = true;
  observer.Finish(end, sample);
  return sample;
}

void RunWorker(const LoadOptions& options, const Endpoint& endpoint, std::atomic<int>& next,
               std::vector<RequestSample>& samples) {
  HttpClient client(endpoint);
  RequestBodyOptions body_options;
  body_options.model = options.model;
  body_options.chat = options.endpoint.find("chat") != std::string::npos;
  body_options.max_tokens = options.max_tokens;
  body_options.temperature = options.temperature;
  body_options.stream = options.stream;
  for (int index = next.fetch_add(1); index < options.requests; index = next.fetch_add(1)) {
    samples.push_back(RunOne(client, options, body_options, index));
  }
}

}  // namespace

Status ValidateLoadOptions(const LoadOptions& options) {
  if (options.concurrency < 1) return InvalidArgument("concurrency must be >= 1", "concurrency");
  if (options.requests < 1) return InvalidArgument("requests must be >= 1", "requests");
  if (options.max_tokens < 1) return InvalidArgument("max_tokens must be >= 1", "max_tokens");
  if (options.prompt_min_words < 1) {
    return InvalidArgument("prompt_min_words must be >= 1", "prompt_min_words");
  }
  if (options.prompt_max_words < options.prompt_min_words) {
    return InvalidArgument("prompt_max_words must be >= prompt_min_words", "prompt_max_words");
  }
  if (options.port < 1 || options.port > 65535) {
    return InvalidArgument("port must be in 1..65535", "port");
  }
  if (!options.endpoint.starts_with('/')) {
    return InvalidArgument("endpoint must be a path starting with '/'", "endpoint");
  }
  if (options.timeout.count() <= 0) return InvalidArgument("timeout must be > 0", "timeout");
  if (!(options.temperature >= 0.0f)) {
    return InvalidArgument("temperature must be >= 0", "temperature");
  }
  return {};
}

Result<LoadReport> RunLoad(const LoadOptions& options) {
  if (auto valid = ValidateLoadOptions(options); !valid) return std::unexpected(valid.error());
  auto endpoint = Resolve(options.host, options.port);
  if (!endpoint) return std::unexpected(endpoint.error());
  const int workers = std::min(options.concurrency, options.requests);
  std::vector<std::vector<RequestSample>> per_worker(static_cast<std::size_t>(workers));
  std::atomic<int> next{0};
  const SteadyClock::time_point start = SteadyClock::now();
  {
    std::vector<std::jthread> threads;
    threads.reserve(per_worker.size());
    for (auto& samples : per_worker) {
      threads.emplace_back(
          [&options, &endpoint, &next, &samples] { RunWorker(options, *endpoint, next, samples); });
    }
  }
  const Seconds wall = SteadyClock::now() - start;
  std::vector<RequestSample> all;
  for (auto& samples : per_worker) {
    for (auto& sample : samples) all.push_back(std::move(sample));
  }
  return Summarize(options, all, wall);
}

}  // namespace ember::bench
