// JSON string escaping, the Error → HTTP table, and the small non-streaming encoders (errors,
// model list). Request parsing lives in request_parse.cc, completion bodies and SSE chunks in
// response_encode.cc.
#include "api/openai.h"

#include "api/json_write.h"
#include "api/utf8.h"

namespace ember::api {

namespace {

constexpr std::string_view kReplacementChar = "\xEF\xBF\xBD";  // U+FFFD

void AppendEscapedAscii(std::string& out, unsigned char c) {
  switch (c) {
    case '"':
      out += "\\\"";
      return;
    case '\\':
      out += "\\\\";
      return;
    case '\n':
      out += "\\n";
      return;
    case '\r':
      out += "\\r";
      return;
    case '\t':
      out += "\\t";
      return;
    case '\b':
      out += "\\b";
      return;
    case '\f':
      out += "\\f";
      return;
    default:
      break;
  }
  constexpr char kHex[] = "0123456789abcdef";
  out += "\\u00";
  out += kHex[c >> 4];
  out += kHex[c & 0xF];
}

bool NeedsEscape(unsigned char c) { return c < 0x20 || c == '"' || c == '\\'; }

// U+2028 and U+2029 are valid JSON but end a line in JavaScript; escaping them keeps the output
// safe to embed in a script.
bool IsLineSeparator(std::string_view text, std::size_t pos, std::size_t length) {
  return length == 3 && text[pos] == '\xE2' && text[pos + 1] == '\x80' &&
         (text[pos + 2] == '\xA8' || text[pos + 2] == '\xA9');
}

struct ErrorKind {
  int status;
  std::string_view type;
  std::string_view code;
};

ErrorKind KindOf(const Error& error) {
  switch (error.code) {
    case ErrorCode::kInvalidArgument:
      return {400, "invalid_request_error", "invalid_value"};
    case ErrorCode::kNotFound:
      return {404, "invalid_request_error",
              error.param == "model" ? "model_not_found" : "not_found"};
    case ErrorCode::kUnauthenticated:
      return {401, "authentication_error", "unauthenticated"};
    case ErrorCode::kPermissionDenied:
      return {403, "permission_error", "permission_denied"};
    case ErrorCode::kResourceExhausted:
      return {429, "rate_limit_error", "rate_limit_exceeded"};
    case ErrorCode::kUnavailable:
      return {503, "server_error", "service_unavailable"};
    case ErrorCode::kDeadlineExceeded:
      return {503, "server_error", "queue_timeout"};
    case ErrorCode::kInternal:
      return {500, "server_error", "internal_error"};
  }
  return {500, "server_error", "internal_error"};
}

void AppendErrorEnvelope(std::string& out, const Error& error, const ErrorKind& kind) {
  out += "{\"error\":{\"message\":";
  AppendQuoted(out, error.message);
  out += ",\"type\":";
  AppendQuoted(out, kind.type);
  out += ",\"param\":";
  if (error.param.empty()) {
    out += "null";
  } else {
    AppendQuoted(out, error.param);
  }
  out += ",\"code\":";
  AppendQuoted(out, kind.code);
  out += "}}";
}

}  // namespace

void AppendJsonEscaped(std::string& out, std::string_view text) {
  std::size_t pos = 0;
  std::size_t copied = 0;  // text[copied, pos) is pending, copied verbatim when flushed
  while (pos < text.size()) {
    const auto c = static_cast<unsigned char>(text[pos]);
    if (c < 0x80 && !NeedsEscape(c)) {
      ++pos;
      continue;
    }
    std::size_t length = 1;
    std::string_view replacement;
    if (c >= 0x80) {
      const Utf8Scan scan = ScanUtf8(text, pos);
      length = scan.length;
      if (scan.valid && !IsLineSeparator(text, pos, length)) {
        pos += length;
        continue;
      }
      replacement = !scan.valid               ? kReplacementChar
                    : text[pos + 2] == '\xA8' ? "\\u2028"
                                              : "\\u2029";
    }
    out.append(text, copied, pos - copied);
    if (replacement.empty()) {
      AppendEscapedAscii(out, c);
    } else {
      out += replacement;
    }
    pos += length;
    copied = pos;
  }
  out.append(text, copied, pos - copied);
}

std::string FormatSeconds(double seconds) {
  const auto millis = static_cast<std::int64_t>(seconds * 1000.0 + 0.5);
  std::string out = std::to_string(millis / 1000);
  std::string frac = std::to_string(millis % 1000);
  out += '.';
  out.append(3 - frac.size(), '0');
  out += frac;
  return out;
}

std::string_view FinishReasonString(engine::FinishReason reason) {
  switch (reason) {
    case engine::FinishReason::kStop:
      return "stop";
    case engine::FinishReason::kLength:
      return "length";
    case engine::FinishReason::kContentFilter:
      return "content_filter";
    case engine::FinishReason::kToolCalls:
      return "tool_calls";
    // A cancelled request that still reaches a client (e.g. aborted by a drain) did not end
    // normally, so it reads as an error rather than a clean stop.
    case engine::FinishReason::kCancelled:
    case engine::FinishReason::kError:
      return "error";
  }
  return "error";
}

HttpError ToHttpError(const Error& error) {
  const ErrorKind kind = KindOf(error);
  HttpError http;
  http.status = kind.status;
  AppendErrorEnvelope(http.body, error, kind);
  return http;
}

HttpError ToHttpError(const Error& error, int status, std::string_view code) {
  ErrorKind kind = KindOf(error);
  kind.status = status;
  kind.code = code;
  HttpError http;
  http.status = status;
  AppendErrorEnvelope(http.body, error, kind);
  return http;
}

std::string EncodeErrorEvent(const Error& error) {
  std::string out = "data: ";
  AppendErrorEnvelope(out, error, KindOf(error));
  out += "\n\n";
  return out;
}

std::string EncodeModelList(const std::vector<ModelCard>& models) {
  std::string out = "{\"object\":\"list\",\"data\":[";
  for (std::size_t i = 0; i < models.size(); ++i) {
    const ModelCard& card = models[i];
    if (i > 0) out += ',';
    out += "{\"id\":";
    AppendQuoted(out, card.id);
    out += ",\"object\":\"model\",\"created\":";
    AppendInt(out, card.created);
    out += ",\"owned_by\":";
    AppendQuoted(out, card.owned_by);
    out += ",\"context_length\":";
    AppendInt(out, card.context_length);
    if (!card.status.empty()) {
      out += ",\"status\":";
      AppendQuoted(out, card.status);
    }
    if (card.embedding_dimensions > 0) {
      out += ",\"embedding_dimensions\":";
      AppendInt(out, card.embedding_dimensions);
    }
    if (card.embedding_only) out += ",\"embedding_only\":true";
    out += '}';
  }
  out += "]}";
  return out;
}

}  // namespace ember::api
