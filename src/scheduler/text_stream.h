// Turns a sequence's token pieces into text that is safe to send: holds back an incomplete
// UTF-8 sequence and any tail that could still become a stop string, and cuts the output
// before the first stop string. It also tells which tokens' bytes have all been returned, so
// per-token data (logprobs) can travel with the text it belongs to. Engine thread only (one
// per sequence).
#pragma once

#include <deque>
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
  // How many appended tokens, oldest first, had their last byte returned by Append/Flush
  // since the previous call. A token with any byte cut by a stop string is never released;
  // one with no bytes is released with the text before it.
  int TakeReleased();

 private:
  std::size_t HoldBack() const;
  // Releases the tokens that end within the first `bytes` of pending_ and drops those bytes.
  void Emit(std::size_t bytes);

  std::vector<std::string> stop_;
  std::string pending_;
  std::deque<std::size_t> ends_;  // per token not yet released: its end offset in pending_
  int released_ = 0;
  bool stopped_ = false;
};

}  // namespace ember::scheduler
