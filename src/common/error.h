// Errors are values: fallible functions return Result<T> (std::expected<T, Error>).
// Error carries a code (mapped to HTTP by api/errors.h) and a message a user can act on.
// Used by every component; depends on nothing.
#pragma once

#include <expected>
#include <string>
#include <string_view>
#include <utility>

namespace ember {

enum class ErrorCode {
  kInvalidArgument,
  kNotFound,
  kUnauthenticated,
  kPermissionDenied,
  kResourceExhausted,
  kUnavailable,
  kDeadlineExceeded,
  kInternal,
};

std::string_view ErrorCodeName(ErrorCode code);

struct Error {
  ErrorCode code = ErrorCode::kInternal;
  std::string message;
  // The offending request field (OpenAI's error.param), empty when not about one field.
  std::string param;
};

template <typename T>
using Result = std::expected<T, Error>;
using Status = std::expected<void, Error>;

inline std::unexpected<Error> MakeError(ErrorCode code, std::string message,
                                        std::string param = {}) {
  return std::unexpected<Error>(Error{code, std::move(message), std::move(param)});
}
inline std::unexpected<Error> InvalidArgument(std::string message, std::string param = {}) {
  return MakeError(ErrorCode::kInvalidArgument, std::move(message), std::move(param));
}
inline std::unexpected<Error> NotFound(std::string message, std::string param = {}) {
  return MakeError(ErrorCode::kNotFound, std::move(message), std::move(param));
}
inline std::unexpected<Error> Unauthenticated(std::string message) {
  return MakeError(ErrorCode::kUnauthenticated, std::move(message));
}
inline std::unexpected<Error> PermissionDenied(std::string message) {
  return MakeError(ErrorCode::kPermissionDenied, std::move(message));
}
inline std::unexpected<Error> ResourceExhausted(std::string message) {
  return MakeError(ErrorCode::kResourceExhausted, std::move(message));
}
inline std::unexpected<Error> Unavailable(std::string message) {
  return MakeError(ErrorCode::kUnavailable, std::move(message));
}
inline std::unexpected<Error> DeadlineExceeded(std::string message) {
  return MakeError(ErrorCode::kDeadlineExceeded, std::move(message));
}
inline std::unexpected<Error> Internal(std::string message) {
  return MakeError(ErrorCode::kInternal, std::move(message));
}

}  // namespace ember
