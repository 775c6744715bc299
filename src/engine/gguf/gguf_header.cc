#include "engine/gguf/gguf_header.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>
#include <iterator>
#include <string>
#include <system_error>
#include <unordered_set>

#include "common/log.h"

namespace ember::engine {
namespace {

constexpr std::uint32_t kNewestVersion = 3;
constexpr std::uint64_t kHeaderBytes = 24;  // magic, version, n_tensors, n_kv
// The spec's limit for keys; tensor names are held to it too (ggml's own limit is 63).
constexpr std::uint64_t kMaxNameBytes = 65535;
// ggml's GGUF_MAX_STRING_LENGTH and GGUF_MAX_ARRAY_ELEMENTS.
constexpr std::uint64_t kMaxStringBytes = std::uint64_t{1} << 30;
constexpr std::uint64_t kMaxArrayElements = std::uint64_t{1} << 30;
// Far above any model (tens of keys, thousands of tensors), and a bound on what is reserved.
constexpr std::uint64_t kMaxKvs = std::uint64_t{1} << 16;
constexpr std::uint64_t kMaxTensors = std::uint64_t{1} << 20;
// The least a KV takes: key length and 1 byte of key, value type, a 1-byte value.
constexpr std::uint64_t kMinKvBytes = 8 + 1 + 4 + 1;
// The least a tensor info takes: name length, n_dims, one ne, type, offset.
constexpr std::uint64_t kMinTensorBytes = 8 + 4 + 8 + 4 + 8;
// Integer arrays up to this long keep their elements (per-layer hyperparameters; a vocabulary's
// token types are longer and only counted), up to this many elements in all.
constexpr std::uint64_t kMaxKeptElements = std::uint64_t{1} << 16;
constexpr std::uint64_t kMaxKeptElementsTotal = std::uint64_t{1} << 20;

template <typename... Args>
std::unexpected<Error> Malformed(std::uint64_t at, Args&&... args) {
  return InvalidArgument(StrCat("at byte ", at, ": ", std::forward<Args>(args)...));
}

// Bytes of one element of a fixed-size type; 0 for STRING, ARRAY and unknown types.
std::uint64_t FixedSize(GgufType type) {
  switch (type) {
    case GgufType::kUint8:
    case GgufType::kInt8:
    case GgufType::kBool:
      return 1;
    case GgufType::kUint16:
    case GgufType::kInt16:
      return 2;
    case GgufType::kUint32:
    case GgufType::kInt32:
    case GgufType::kFloat32:
      return 4;
    case GgufType::kUint64:
    case GgufType::kInt64:
    case GgufType::kFloat64:
      return 8;
    default:
      return 0;
  }
}

bool IsKnownType(std::uint32_t raw) {
  return raw <= static_cast<std::uint32_t>(GgufType::kFloat64);
}

// A little-endian cursor over the input. Every read is checked against the bytes that remain;
// a failed one returns false and leaves the position where the read began.
class Reader {
 public:
  explicit Reader(std::span<const std::byte> bytes) : data_(bytes) {}
  std::uint64_t pos() const { return pos_; }
  std::uint64_t remaining() const { return data_.size() - pos_; }

  // An unsigned integer of `bytes` (1, 2, 4 or 8) bytes.
  bool ReadUint(std::uint64_t bytes, std::uint64_t* out) {
    if (bytes > remaining()) return false;
    std::uint64_t v = 0;
    if constexpr (std::endian::native == std::endian::little) {
      std::memcpy(&v, data_.data() + pos_, static_cast<std::size_t>(bytes));
    } else {
      for (std::uint64_t i = 0; i < bytes; ++i) {
        v |= std::uint64_t{std::to_integer<std::uint8_t>(data_[pos_ + i])} << (8 * i);
      }
    }
    pos_ += bytes;
    *out = v;
    return true;
  }
  bool ReadU32(std::uint32_t* out) {
    std::uint64_t v = 0;
    if (!ReadUint(4, &v)) return false;
    *out = static_cast<std::uint32_t>(v);
    return true;
  }
  bool ReadU64(std::uint64_t* out) { return ReadUint(8, out); }
  bool Skip(std::uint64_t bytes) {
    if (bytes > remaining()) return false;
    pos_ += bytes;
    return true;
  }
  std::string_view View(std::uint64_t bytes) const {  // bytes <= remaining()
    return {reinterpret_cast<const char*>(data_.data() + pos_), static_cast<std::size_t>(bytes)};
  }

 private:
  std::span<const std::byte> data_;
  std::uint64_t pos_ = 0;
};

// Reads a GGUF string (u64 length, bytes) of at most `max_bytes` into a view of the input.
// `what` names it in errors.
Result<std::string_view> ReadString(Reader& r, std::uint64_t max_bytes, std::string_view what) {
  const std::uint64_t at = r.pos();
  std::uint64_t len = 0;
  if (!r.ReadU64(&len))
    return Malformed(at, "truncated: the length of ", what, " runs past the end");
  if (len > max_bytes) {
    return Malformed(at, what, " is ", len, " bytes long, more than the limit of ", max_bytes);
  }
  if (len > r.remaining()) {
    return Malformed(at, "truncated: ", what, " is ", len, " bytes long, only ", r.remaining(),
                     " remain");
  }
  std::string_view s = r.View(len);
  r.Skip(len);
  return s;
}

Status ReadScalar(Reader& r, GgufType type, std::string_view key, GgufValue* v) {
  const std::uint64_t at = r.pos();
  if (type == GgufType::kString) {
    auto s = ReadString(r, kMaxStringBytes, StrCat("the string value of key '", key, "'"));
    if (!s) return std::unexpected(s.error());
    v->string_value.assign(*s);
    return {};
  }
  const std::uint64_t size = FixedSize(type);
  std::uint64_t bits = 0;
  if (!r.ReadUint(size, &bits)) {
    return Malformed(at, "truncated: the ", GgufTypeName(type), " value of key '", key,
                     "' runs past the end");
  }
  if (IsGgufUnsignedInt(type)) {
    v->uint_value = bits;
  } else if (IsGgufSignedInt(type)) {
    const int shift = static_cast<int>(64 - 8 * size);  // sign-extend from `size` bytes
    v->int_value = static_cast<std::int64_t>(bits << shift) >> shift;
  } else if (type == GgufType::kBool) {
    v->uint_value = bits != 0 ? 1 : 0;  // as ggml reads it: any non-zero byte is true
  } else if (type == GgufType::kFloat32) {
    v->float_value = std::bit_cast<float>(static_cast<std::uint32_t>(bits));
  } else {
    v->float_value = std::bit_cast<double>(bits);
  }
  return {};
}

Status ReadArray(Reader& r, std::string_view key, GgufValue* v, std::uint64_t* kept_total) {
  const std::uint64_t at = r.pos();
  std::uint32_t raw_type = 0;
  if (!r.ReadU32(&raw_type) || !r.ReadU64(&v->count)) {
    return Malformed(at, "truncated: the array header of key '", key, "' runs past the end");
  }
  if (!IsKnownType(raw_type)) {
    return Malformed(at, "key '", key, "' is an array of unknown GGUF type ", raw_type);
  }
  v->element_type = static_cast<GgufType>(raw_type);
  if (v->element_type == GgufType::kArray) {
    return Malformed(at, "key '", key, "' is an array of arrays, which GGUF does not allow");
  }
  if (v->count > kMaxArrayElements) {
    return Malformed(at + 4, "key '", key, "' claims ", v->count,
                     " array elements, more than the "
                     "limit of ",
                     kMaxArrayElements);
  }
  const bool is_string = v->element_type == GgufType::kString;
  const std::uint64_t size = is_string ? 8 : FixedSize(v->element_type);  // least, for strings
  if (v->count * size > r.remaining()) {  // no overflow: count <= 2^30, size <= 8
    return Malformed(at + 4, "truncated: key '", key, "' claims ", v->count, " ",
                     GgufTypeName(v->element_type), " elements (at least ", v->count * size,
                     " bytes), only ", r.remaining(), " bytes remain");
  }
  if (is_string) {
    for (std::uint64_t i = 0; i < v->count; ++i) {
      const std::uint64_t string_at = r.pos();
      std::uint64_t len = 0;
      if (!r.ReadU64(&len)) {
        return Malformed(string_at, "truncated: string ", i, " of key '", key,
                         "' runs past the end");
      }
      if (len > kMaxStringBytes) {
        return Malformed(string_at, "string ", i, " of key '", key, "' is ", len,
                         " bytes long, more than the limit of ", kMaxStringBytes);
      }
      if (!r.Skip(len)) {
        return Malformed(string_at, "truncated: string ", i, " of key '", key, "' is ", len,
                         " bytes long, only ", r.remaining(), " remain");
      }
    }
    return {};
  }
  const bool is_unsigned = IsGgufUnsignedInt(v->element_type);
  const bool keep =
      (is_unsigned || IsGgufSignedInt(v->element_type)) && v->count <= kMaxKeptElements;
  if (!keep) {
    r.Skip(v->count * size);
    return {};
  }
  *kept_total += v->count;
  if (*kept_total > kMaxKeptElementsTotal) {
    return Malformed(at, "the header's integer arrays hold more than ", kMaxKeptElementsTotal,
                     " short-array elements in all; not a model header");
  }
  if (is_unsigned) {
    v->uint_elements.resize(v->count);
  } else {
    v->int_elements.resize(v->count);
  }
  const int shift = static_cast<int>(64 - 8 * size);
  for (std::uint64_t i = 0; i < v->count; ++i) {
    std::uint64_t bits = 0;
    r.ReadUint(size, &bits);  // the count check above covers every element
    if (is_unsigned) {
      v->uint_elements[i] = bits;
    } else {
      v->int_elements[i] = static_cast<std::int64_t>(bits << shift) >> shift;
    }
  }
  return {};
}

Status ReadVersion(Reader& r, std::uint32_t* version) {
  if (!r.ReadU32(version)) return Malformed(r.pos(), "truncated: no GGUF version");
  const std::uint64_t at = 4;
  if (*version == 0) return Malformed(at, "GGUF version 0 is invalid");
  if ((*version & 0xFFFF) == 0) {
    return Malformed(at, "GGUF version ", *version,
                     " is implausibly large: a file of the other byte order (big-endian)?");
  }
  if (*version == 1) return Malformed(at, "GGUFv1 is no longer supported");
  if (*version > kNewestVersion) {
    return Malformed(at, "GGUF version ", *version, " is newer than this reader (up to ",
                     kNewestVersion, ")");
  }
  return {};
}

Status ReadKvs(Reader& r, std::uint64_t n_kv, GgufHeader* h) {
  h->kvs.reserve(static_cast<std::size_t>(std::min<std::uint64_t>(n_kv, 256)));
  std::unordered_set<std::string_view> seen;
  std::uint64_t kept_total = 0;
  for (std::uint64_t i = 0; i < n_kv; ++i) {
    const std::uint64_t key_at = r.pos();
    auto key = ReadString(r, kMaxNameBytes, StrCat("key ", i));
    if (!key) return std::unexpected(key.error());
    if (key->empty()) return Malformed(key_at, "key ", i, " is empty");
    if (!seen.insert(*key).second) return Malformed(key_at, "duplicate key '", *key, "'");
    const std::uint64_t type_at = r.pos();
    std::uint32_t raw_type = 0;
    if (!r.ReadU32(&raw_type)) {
      return Malformed(type_at, "truncated: the type of key '", *key, "' runs past the end");
    }
    if (!IsKnownType(raw_type)) {
      return Malformed(type_at, "key '", *key, "' has unknown GGUF type ", raw_type);
    }
    GgufValue value;
    value.type = static_cast<GgufType>(raw_type);
    Status st = value.type == GgufType::kArray ? ReadArray(r, *key, &value, &kept_total)
                                               : ReadScalar(r, value.type, *key, &value);
    if (!st) return st;
    h->kvs.emplace_back(std::string(*key), std::move(value));
  }
  if (const GgufValue* a = h->Find("general.alignment")) {
    if (a->type != GgufType::kUint32) {
      return Malformed(r.pos(), "general.alignment must be a UINT32, is a ", GgufTypeName(a->type));
    }
    if (a->uint_value == 0 || (a->uint_value & (a->uint_value - 1)) != 0) {
      return Malformed(r.pos(), "general.alignment ", a->uint_value, " is not a power of two");
    }
    h->alignment = static_cast<std::uint32_t>(a->uint_value);
  }
  return {};
}

Status ReadTensor(Reader& r, std::uint64_t i, std::unordered_set<std::string_view>& seen,
                  GgufTensorInfo* t) {
  const std::uint64_t at = r.pos();
  auto name = ReadString(r, kMaxNameBytes, StrCat("the name of tensor ", i));
  if (!name) return std::unexpected(name.error());
  if (!seen.insert(*name).second) return Malformed(at, "duplicate tensor name '", *name, "'");
  t->name.assign(*name);
  const std::uint64_t dims_at = r.pos();
  if (!r.ReadU32(&t->n_dims)) {
    return Malformed(dims_at, "truncated: tensor '", t->name, "' runs past the end");
  }
  if (t->n_dims < 1 || t->n_dims > 4) {
    return Malformed(dims_at, "tensor '", t->name, "' has ", t->n_dims, " dimensions, not 1 to 4");
  }
  std::int64_t elements = 1;
  for (std::uint32_t d = 0; d < t->n_dims; ++d) {
    const std::uint64_t ne_at = r.pos();
    std::uint64_t bits = 0;
    if (!r.ReadU64(&bits)) {
      return Malformed(ne_at, "truncated: tensor '", t->name, "' runs past the end");
    }
    t->ne[d] = static_cast<std::int64_t>(bits);
    if (t->ne[d] < 0) {
      return Malformed(ne_at, "tensor '", t->name, "' has ", t->ne[d], " elements in dimension ",
                       d);
    }
    if (__builtin_mul_overflow(elements, t->ne[d], &elements)) {
      return Malformed(ne_at, "tensor '", t->name, "' has more elements than an int64 holds");
    }
  }
  const std::uint64_t type_at = r.pos();
  if (!r.ReadU32(&t->type) || !r.ReadU64(&t->offset)) {
    return Malformed(type_at, "truncated: tensor '", t->name, "' runs past the end");
  }
  return {};
}

}  // namespace

std::string_view GgufTypeName(GgufType type) {
  constexpr std::string_view kNames[] = {"UINT8",  "INT8",    "UINT16", "INT16",  "UINT32",
                                         "INT32",  "FLOAT32", "BOOL",   "STRING", "ARRAY",
                                         "UINT64", "INT64",   "FLOAT64"};
  const auto i = static_cast<std::uint32_t>(type);
  return i < std::size(kNames) ? kNames[i] : "unknown";
}

bool IsGgufSignedInt(GgufType type) {
  return type == GgufType::kInt8 || type == GgufType::kInt16 || type == GgufType::kInt32 ||
         type == GgufType::kInt64;
}

bool IsGgufUnsignedInt(GgufType type) {
  return type == GgufType::kUint8 || type == GgufType::kUint16 || type == GgufType::kUint32 ||
         type == GgufType::kUint64;
}

const GgufValue* GgufHeader::Find(std::string_view key) const {
  for (const auto& [k, v] : kvs) {
    if (k == key) return &v;
  }
  return nullptr;
}

Result<GgufHeader> ParseGgufHeader(std::span<const std::byte> bytes) {
  Reader r(bytes);
  if (r.remaining() < 4) return Malformed(0, "truncated: no GGUF magic");
  if (r.View(4) != "GGUF") {
    std::string shown;
    for (char c : r.View(4)) shown += (c >= 0x20 && c < 0x7f) ? c : '?';
    return Malformed(0, "bad magic '", shown, "', expected 'GGUF'");
  }
  r.Skip(4);
  GgufHeader h;
  if (Status st = ReadVersion(r, &h.version); !st) return std::unexpected(st.error());
  std::uint64_t n_tensors = 0;
  std::uint64_t n_kv = 0;
  if (!r.ReadU64(&n_tensors) || !r.ReadU64(&n_kv)) {
    return Malformed(r.pos(), "truncated: the tensor and key counts run past the end");
  }
  if (n_kv > kMaxKvs || n_kv > r.remaining() / kMinKvBytes) {
    return Malformed(16, "n_kv ", n_kv, " is more than the ", r.remaining(),
                     " bytes that follow can hold (or more than ", kMaxKvs, ")");
  }
  if (n_tensors > kMaxTensors || n_tensors > r.remaining() / kMinTensorBytes) {
    return Malformed(8, "n_tensors ", n_tensors, " is more than the ", r.remaining(),
                     " bytes that follow can hold (or more than ", kMaxTensors, ")");
  }
  if (Status st = ReadKvs(r, n_kv, &h); !st) return std::unexpected(st.error());
  if (n_tensors > r.remaining() / kMinTensorBytes) {
    return Malformed(r.pos(), "truncated: ", n_tensors, " tensor infos cannot fit in the ",
                     r.remaining(), " bytes after the keys");
  }
  h.tensors.resize(static_cast<std::size_t>(n_tensors));
  std::unordered_set<std::string_view> seen;
  for (std::uint64_t i = 0; i < n_tensors; ++i) {
    if (Status st = ReadTensor(r, i, seen, &h.tensors[i]); !st) {
      return std::unexpected(st.error());
    }
  }
  h.header_bytes = r.pos();
  return h;
}

Result<GgufHeader> ParseGgufHeader(std::string_view bytes) {
  return ParseGgufHeader(std::as_bytes(std::span(bytes.data(), bytes.size())));
}

Result<GgufHeader> ReadGgufHeader(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const int err = errno;
    std::string why = std::generic_category().message(err);
    if (err == ENOENT || err == ENOTDIR) return NotFound(StrCat("no such file (", why, ")"));
    return InvalidArgument(StrCat("cannot open it: ", why));
  }
  struct stat st{};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return InvalidArgument("not a regular file");
  }
  const auto size = static_cast<std::size_t>(st.st_size);
  if (size < kHeaderBytes) {  // mmap refuses an empty file; the parse names what is missing
    std::byte small[kHeaderBytes];
    const ssize_t n = ::pread(fd, small, size, 0);
    ::close(fd);
    if (n < 0) return InvalidArgument("cannot read it");
    return ParseGgufHeader(std::span<const std::byte>(small, static_cast<std::size_t>(n)));
  }
  void* map = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  const int map_err = errno;
  ::close(fd);
  if (map == MAP_FAILED) {
    return InvalidArgument(StrCat("cannot map it: ", std::generic_category().message(map_err)));
  }
  auto header = ParseGgufHeader(std::span(static_cast<const std::byte*>(map), size));
  ::munmap(map, size);
  return header;
}

}  // namespace ember::engine
