#include "api/utf8.h"

namespace ember::api {

namespace {

struct LeadInfo {
  std::size_t length = 0;  // 0: not a valid lead byte
  unsigned char second_lo = 0x80;
  unsigned char second_hi = 0xBF;
};

// The range of the second byte is narrowed for E0 (overlong), ED (surrogates), F0
// (overlong) and F4 (above U+10FFFF); every later byte is 80..BF.
LeadInfo ClassifyLead(unsigned char lead) {
  if (lead >= 0xC2 && lead <= 0xDF) return {2};
  if (lead == 0xE0) return {3, 0xA0, 0xBF};
  if (lead == 0xED) return {3, 0x80, 0x9F};
  if (lead >= 0xE1 && lead <= 0xEF) return {3};
  if (lead == 0xF0) return {4, 0x90, 0xBF};
  if (lead >= 0xF1 && lead <= 0xF3) return {4};
  if (lead == 0xF4) return {4, 0x80, 0x8F};
  return {};
}

}  // namespace

Utf8Scan ScanUtf8(std::string_view text, std::size_t pos) {
  const auto lead = static_cast<unsigned char>(text[pos]);
  if (lead < 0x80) return {1, true};
  const LeadInfo info = ClassifyLead(lead);
  if (info.length == 0) return {1, false};
  for (std::size_t k = 1; k < info.length; ++k) {
    if (pos + k >= text.size()) return {k, false};
    const auto byte = static_cast<unsigned char>(text[pos + k]);
    const unsigned char lo = k == 1 ? info.second_lo : 0x80;
    const unsigned char hi = k == 1 ? info.second_hi : 0xBF;
    if (byte < lo || byte > hi) return {k, false};
  }
  return {info.length, true};
}

std::optional<std::size_t> FindInvalidUtf8(std::string_view text) {
  std::size_t pos = 0;
  while (pos < text.size()) {
    if (static_cast<unsigned char>(text[pos]) < 0x80) {
      ++pos;
      continue;
    }
    const Utf8Scan scan = ScanUtf8(text, pos);
    if (!scan.valid) return pos;
    pos += scan.length;
  }
  return std::nullopt;
}

}  // namespace ember::api
