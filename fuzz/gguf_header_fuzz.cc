// libFuzzer target: engine/gguf's GGUF header reader (ParseGgufHeader) fed arbitrary bytes. It
// must never crash, hang or allocate past -rss_limit_mb. A rejection is InvalidArgument naming
// a byte offset inside the input; an accepted header is self-consistent (unique non-empty keys,
// integer array elements kept in full or not at all, tensors of 1..4 dimensions with ne >= 0),
// depends only on its own bytes (the exact header parses the same, one byte less does not).
//
// Input (see fuzz/corpus/gguf_header/): any bytes; the seeds are small complete GGUF headers.
#include <charconv>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <unordered_set>

#include "engine/gguf/gguf_header.h"
#include "fuzz/fuzz_util.h"

namespace ember::fuzz {
namespace {

using engine::GgufHeader;
using engine::GgufTensorInfo;
using engine::GgufType;
using engine::GgufValue;

void CheckRejected(const Error& error, std::size_t size) {
  FUZZ_CHECK(error.code == ErrorCode::kInvalidArgument, "code %d: %s", static_cast<int>(error.code),
             error.message.c_str());
  constexpr std::string_view kPrefix = "at byte ";
  const std::string_view message = error.message;
  FUZZ_CHECK(message.starts_with(kPrefix), "no offset: %s", error.message.c_str());
  std::uint64_t at = 0;
  const char* digits = message.data() + kPrefix.size();
  const auto parsed = std::from_chars(digits, message.data() + message.size(), at);
  FUZZ_CHECK(parsed.ec == std::errc() && at <= size, "offset past the input (%zu bytes): %s", size,
             error.message.c_str());
}

void CheckValue(const std::string& key, const GgufValue& v) {
  const bool is_integer = [](GgufType t) {
    return engine::IsGgufSignedInt(t) || engine::IsGgufUnsignedInt(t);
  }(v.type == GgufType::kArray ? v.element_type : v.type);
  if (v.type == GgufType::kBool) FUZZ_CHECK(v.uint_value <= 1, "bool '%s'", key.c_str());
  if (v.type != GgufType::kArray) {
    FUZZ_CHECK(v.uint_elements.empty() && v.int_elements.empty() && v.count == 0,
               "scalar '%s' has array fields", key.c_str());
    return;
  }
  FUZZ_CHECK(v.element_type != GgufType::kArray, "nested array '%s'", key.c_str());
  const std::size_t kept = v.uint_elements.size() + v.int_elements.size();
  FUZZ_CHECK(kept == 0 || (is_integer && kept == v.count), "'%s' keeps %zu of %llu elements",
             key.c_str(), kept, static_cast<unsigned long long>(v.count));
  FUZZ_CHECK(v.uint_elements.empty() || engine::IsGgufUnsignedInt(v.element_type),
             "'%s' keeps unsigned elements of a signed type", key.c_str());
  FUZZ_CHECK(v.int_elements.empty() || engine::IsGgufSignedInt(v.element_type),
             "'%s' keeps signed elements of an unsigned type", key.c_str());
  FUZZ_CHECK(!is_integer || v.count == 0 || kept == v.count || v.count > 65536,
             "integer array '%s' of %llu elements not kept", key.c_str(),
             static_cast<unsigned long long>(v.count));
}

void CheckTensor(const GgufTensorInfo& t) {
  FUZZ_CHECK(t.n_dims >= 1 && t.n_dims <= 4, "tensor '%s': %u dims", t.name.c_str(), t.n_dims);
  for (std::uint32_t d = 0; d < 4; ++d) {
    FUZZ_CHECK(t.ne[d] >= 0, "tensor '%s': ne%u < 0", t.name.c_str(), d);
    FUZZ_CHECK(d < t.n_dims || t.ne[d] == 1, "tensor '%s': ne%u past n_dims", t.name.c_str(), d);
  }
}

void CheckAccepted(const GgufHeader& h, std::span<const std::byte> input) {
  FUZZ_CHECK(h.version == 2 || h.version == 3, "version %u", h.version);
  FUZZ_CHECK(h.header_bytes >= 24 && h.header_bytes <= input.size(), "header of %llu bytes",
             static_cast<unsigned long long>(h.header_bytes));
  FUZZ_CHECK(h.alignment != 0 && (h.alignment & (h.alignment - 1)) == 0, "alignment %u",
             h.alignment);
  std::unordered_set<std::string_view> keys;
  for (const auto& [key, value] : h.kvs) {
    FUZZ_CHECK(!key.empty() && keys.insert(key).second, "key '%s' empty or repeated", key.c_str());
    FUZZ_CHECK(h.Find(key) == &value, "Find('%s') is another entry", key.c_str());
    CheckValue(key, value);
  }
  std::unordered_set<std::string_view> names;
  for (const GgufTensorInfo& t : h.tensors) {
    FUZZ_CHECK(names.insert(t.name).second, "tensor '%s' repeated", t.name.c_str());
    CheckTensor(t);
  }
  auto exact = engine::ParseGgufHeader(input.first(h.header_bytes));
  FUZZ_CHECK(exact && exact->kvs.size() == h.kvs.size() &&
                 exact->tensors.size() == h.tensors.size() && exact->header_bytes == h.header_bytes,
             "the header's own %llu bytes parse differently",
             static_cast<unsigned long long>(h.header_bytes));
  auto shorter = engine::ParseGgufHeader(input.first(h.header_bytes - 1));
  FUZZ_CHECK(!shorter, "the header parses without its last byte");
  CheckRejected(shorter.error(), h.header_bytes - 1);
}

}  // namespace
}  // namespace ember::fuzz

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace ember;
  const std::span<const std::byte> input(reinterpret_cast<const std::byte*>(data), size);
  auto header = engine::ParseGgufHeader(input);
  if (header) {
    fuzz::CheckAccepted(*header, input);
  } else {
    fuzz::CheckRejected(header.error(), size);
  }
  return 0;
}
