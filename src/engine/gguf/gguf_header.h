// ember's own reader of a GGUF file's header: its key-value metadata and tensor infos, for code
// that needs a model's hyperparameters or tensor shapes before (or without) loading it through
// libllama (engine/llama's memory estimate). It steps over the contents of string, float and
// bool arrays (a vocabulary and its merges) without materialising them, so a 128k-token header
// costs about a millisecond where ggml's gguf_init_from_file allocates every string.
//
// Pure: no ggml, no llama.cpp. Every read is bounds-checked and every count is checked against
// the bytes that remain before anything is reserved, so hostile input gives InvalidArgument
// (naming the problem and its byte offset), never a crash or an unbounded allocation.
// Stateless; callable from any thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/error.h"

namespace ember::engine {

// GGUF value types, numbered as in the file.
enum class GgufType : std::uint32_t {
  kUint8 = 0,
  kInt8 = 1,
  kUint16 = 2,
  kInt16 = 3,
  kUint32 = 4,
  kInt32 = 5,
  kFloat32 = 6,
  kBool = 7,
  kString = 8,
  kArray = 9,
  kUint64 = 10,
  kInt64 = 11,
  kFloat64 = 12,
};

std::string_view GgufTypeName(GgufType type);
bool IsGgufSignedInt(GgufType type);    // INT8, INT16, INT32, INT64
bool IsGgufUnsignedInt(GgufType type);  // UINT8, UINT16, UINT32, UINT64

// One metadata value. Which fields hold it depends on `type`.
struct GgufValue {
  GgufType type = GgufType::kUint8;
  // Scalars: an unsigned integer or a BOOL (0 or 1) in `uint_value`, a signed integer in
  // `int_value`, FLOAT32 and FLOAT64 in `float_value`, STRING in `string_value`.
  std::uint64_t uint_value = 0;
  std::int64_t int_value = 0;
  double float_value = 0;
  std::string string_value;
  // Arrays (type kArray): the element type and count. Integer elements are kept, in
  // `uint_elements` or `int_elements` by signedness (per-layer hyperparameters); the elements
  // of string, float and bool arrays are skipped over and only counted.
  GgufType element_type = GgufType::kUint8;
  std::uint64_t count = 0;
  std::vector<std::uint64_t> uint_elements;
  std::vector<std::int64_t> int_elements;
};

struct GgufTensorInfo {
  std::string name;
  std::uint32_t type = 0;             // a ggml_type, not checked here (this module knows no ggml)
  std::uint32_t n_dims = 0;           // 1..4
  std::int64_t ne[4] = {1, 1, 1, 1};  // elements per dimension, each >= 0; 1 past n_dims
  std::uint64_t offset = 0;           // of its data, from the start of the data section
};

struct GgufHeader {
  std::uint32_t version = 0;                           // 2 or 3
  std::vector<std::pair<std::string, GgufValue>> kvs;  // in file order, keys unique
  std::vector<GgufTensorInfo> tensors;                 // in file order, names unique
  std::uint32_t alignment = 32;    // general.alignment, a power of two; 32 when absent
  std::uint64_t header_bytes = 0;  // where the tensor infos end (the data section follows,
                                   // padded to `alignment`)

  // The value of `key`, or nullptr.
  const GgufValue* Find(std::string_view key) const;
};

// Parses the header at the start of `bytes` (which may go on past it: tensor data is not read).
[[nodiscard]] Result<GgufHeader> ParseGgufHeader(std::span<const std::byte> bytes);
[[nodiscard]] Result<GgufHeader> ParseGgufHeader(std::string_view bytes);

// Maps the file at `path` read-only, parses its header, unmaps it. Only the header's pages are
// read. NotFound when there is no such file; InvalidArgument when it cannot be read or is not a
// GGUF file. Messages describe the problem without repeating `path`: the caller names the file.
[[nodiscard]] Result<GgufHeader> ReadGgufHeader(const std::string& path);

}  // namespace ember::engine
