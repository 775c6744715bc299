#include "scheduler/text_stream.h"

#include <algorithm>
#include <utility>

namespace ember::scheduler {
namespace {

// Bytes at the end of `s` that start a UTF-8 sequence not yet complete.
std::size_t IncompleteUtf8Tail(std::string_view s) {
  const std::size_t look = std::min<std::size_t>(3, s.size());
  for (std::size_t i = 1; i <= look; ++i) {
    const auto c = static_cast<unsigned char>(s[s.size() - i]);
    if ((c & 0xC0) == 0x80) continue;  // continuation byte: keep looking for the lead
    std::size_t need = 1;
    if ((c & 0xE0) == 0xC0)
      need = 2;
    else if ((c & 0xF0) == 0xE0)
      need = 3;
    else if ((c & 0xF8) == 0xF0)
      need = 4;
    return need > i ? i : 0;
  }
  return 0;
}

}  // namespace

TextStream::TextStream(std::vector<std::string> stop) : stop_(std::move(stop)) {
  std::erase_if(stop_, [](const std::string& s) { return s.empty(); });
}

std::size_t TextStream::HoldBack() const {
  std::size_t hold = IncompleteUtf8Tail(pending_);
  for (const std::string& s : stop_) {
    const std::size_t max = std::min(s.size() - 1, pending_.size());
    for (std::size_t len = max; len > hold; --len) {
      if (std::string_view(pending_).substr(pending_.size() - len) ==
          std::string_view(s).substr(0, len)) {
        hold = len;
        break;
      }
    }
  }
  return hold;
}

void TextStream::Emit(std::size_t bytes) {
  while (!ends_.empty() && ends_.front() <= bytes) {
    ends_.pop_front();
    ++released_;
  }
  for (std::size_t& end : ends_) end -= bytes;
  pending_.erase(0, bytes);
}

std::string TextStream::Append(std::string_view piece) {
  if (stopped_) return {};
  pending_.append(piece);
  ends_.push_back(pending_.size());
  std::size_t cut = std::string::npos;
  for (const std::string& s : stop_) cut = std::min(cut, pending_.find(s));
  if (cut != std::string::npos) {
    stopped_ = true;
    std::string out = pending_.substr(0, cut);
    Emit(cut);
    pending_.clear();
    ends_.clear();
    return out;
  }
  const std::size_t emit = pending_.size() - HoldBack();
  std::string out = pending_.substr(0, emit);
  Emit(emit);
  return out;
}

std::string TextStream::Flush() {
  if (stopped_) return {};
  std::string out = pending_;
  Emit(pending_.size());
  return out;
}

int TextStream::TakeReleased() { return std::exchange(released_, 0); }

}  // namespace ember::scheduler
