// Turns a sequence's token pieces into text that is safe to send: holds back an incomplete
// UTF-8 sequence and any tail that could still become a stop string, and cuts the output
// before the first stop string. Engine thread only (one per sequence).
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace ember::scheduler {

class TextStream {
 public:
  explicit TextStream(std::vector<std::string> stop = {});

  // Adds one token's bytes; returns the text that became final. After a stop string
  // completes, stopped() is true and the returned text ends right before it.
  std::string Append(std::string_view piece);
  // At the end of generation: everything still held back (there was no stop).
  std::string Flush();
  bool stopped() const { return stopped_; }

 private:
  std::size_t HoldBack() const;

  std::vector<std::string> stop_;
  std::string pending_;
  bool stopped_ = false;
};

}  // namespace ember::scheduler
