#include "tenancy/validate.h"

#include <cmath>
#include <set>

#include "common/log.h"
#include "tenancy/config.h"
#include "tenancy/store.h"

namespace ember::tenancy {
namespace detail {
namespace {

bool IsLowerHex(char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); }

bool IsHexDigits(std::string_view s, std::size_t n) {
  if (s.size() != n) return false;
  for (char c : s) {
    if (!IsLowerHex(c)) return false;
  }
  return true;
}

// Length of the UTF-8 sequence starting at s[i] (0 when it is not well-formed: overlong forms,
// surrogates and code points past U+10FFFF included).
std::size_t Utf8Length(std::string_view s, std::size_t i) {
  const auto b = [&](std::size_t k) { return static_cast<unsigned char>(s[k]); };
  const unsigned char c = b(i);
  if (c < 0x80) return 1;
  std::size_t n = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc2 ? 2 : 0;
  if (n == 0 || c > 0xf4 || i + n > s.size()) return 0;
  for (std::size_t k = 1; k < n; ++k) {
    if ((b(i + k) & 0xc0) != 0x80) return 0;
  }
  if (c == 0xe0 && b(i + 1) < 0xa0) return 0;   // overlong
  if (c == 0xed && b(i + 1) >= 0xa0) return 0;  // surrogate
  if (c == 0xf0 && b(i + 1) < 0x90) return 0;   // overlong
  if (c == 0xf4 && b(i + 1) >= 0x90) return 0;  // > U+10FFFF
  return n;
}

}  // namespace

bool IsCleanText(std::string_view text) {
  for (std::size_t i = 0; i < text.size();) {
    const unsigned char c = static_cast<unsigned char>(text[i]);
    if ((c < 0x20 && c != '\t') || c == 0x7f) return false;
    const std::size_t n = Utf8Length(text, i);
    if (n == 0) return false;
    i += n;
  }
  return true;
}

std::optional<std::string> CheckTenantName(std::string_view name) {
  if (IsValidTenantName(name)) return std::nullopt;
  return StrCat("invalid tenant name \"", name,
                "\": use 1-63 of a-z 0-9 . _ -, starting with a letter or digit");
}

std::optional<std::string> CheckDisplayName(std::string_view text) {
  if (IsCleanText(text)) return std::nullopt;
  return "display_name must be UTF-8 text without control characters";
}

std::optional<std::string> CheckWeight(double weight) {
  if (std::isfinite(weight) && weight > 0) return std::nullopt;
  return "weight must be a finite number > 0";
}

std::optional<std::string> CheckLimit(std::string_view key, std::int64_t value) {
  if (value >= 1) return std::nullopt;
  return StrCat(key, " must be an integer >= 1 (got ", value, "); omit it for no limit");
}

std::optional<std::string> CheckModelId(std::string_view id) {
  if (!id.empty() && IsCleanText(id)) return std::nullopt;
  return "a model id must be non-empty UTF-8 text without control characters";
}

std::optional<std::string> CheckKeyId(std::string_view id) {
  if (id.starts_with("key_") && IsHexDigits(id.substr(4), 12)) return std::nullopt;
  return StrCat("invalid key id \"", id, "\": expected key_ and 12 lower-case hex digits");
}

std::optional<std::string> CheckSha256Hex(std::string_view hex) {
  // The value is not echoed: it is a hash of a secret.
  if (IsHexDigits(hex, 64)) return std::nullopt;
  return "sha256 must be 64 lower-case hex digits";
}

std::optional<std::string> CheckCreated(std::int64_t created) {
  if (created >= 0) return std::nullopt;
  return "created must be an integer >= 0 (unix seconds)";
}

}  // namespace detail

using namespace detail;

namespace {

Status CheckLimits(const Limits& limits, std::string_view where) {
  for (const LimitField& f : kLimitFields) {
    if (const auto& v = limits.*f.member; v) {
      if (auto why = CheckLimit(f.key, *v)) return InvalidArgument(StrCat(where, ": ", *why));
    }
  }
  return {};
}

}  // namespace

Status ValidateConfig(const Config& config) {
  std::set<std::string_view> names;
  for (const Tenant& t : config.tenants) {
    if (auto why = CheckTenantName(t.name)) return InvalidArgument(*why);
    if (!names.insert(t.name).second) {
      return InvalidArgument(StrCat("tenant \"", t.name, "\" is defined twice"));
    }
    const std::string where = StrCat("tenant \"", t.name, "\"");
    for (const auto& why : {CheckDisplayName(t.display_name), CheckWeight(t.weight)}) {
      if (why) return InvalidArgument(StrCat(where, ": ", *why));
    }
    if (auto ok = CheckLimits(t.limits, where); !ok) return ok;
    for (const auto& [model, limits] : t.model_limits) {
      if (auto why = CheckModelId(model)) return InvalidArgument(StrCat(where, ": ", *why));
      if (auto ok = CheckLimits(limits, StrCat(where, " model \"", model, "\"")); !ok) return ok;
    }
  }
  std::set<std::string_view> ids, hashes;
  for (const ApiKey& k : config.keys) {
    if (auto why = CheckKeyId(k.id)) return InvalidArgument(*why);
    const std::string where = StrCat("key ", k.id);
    for (const auto& why : {CheckSha256Hex(k.sha256_hex), CheckCreated(k.created)}) {
      if (why) return InvalidArgument(StrCat(where, ": ", *why));
    }
    if (!names.contains(k.tenant)) {
      return InvalidArgument(StrCat(where, ": no tenant \"", k.tenant, "\""));
    }
    if (!ids.insert(k.id).second) return InvalidArgument(StrCat(where, ": id used twice"));
    if (!hashes.insert(k.sha256_hex).second) {
      return InvalidArgument(StrCat(where, ": the same key hash appears twice"));
    }
  }
  return {};
}

}  // namespace ember::tenancy
