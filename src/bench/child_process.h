// A server process started by `ember bench coldstart`: fork + exec with stdout and stderr on a
// pipe that a thread of its own drains line by line (so the child never blocks on a full
// pipe), keeping the last lines for error reports and watching for one pattern (ember's
// "listening on" line). The destructor stops the child (SIGTERM, then SIGKILL) and reaps it,
// so no server outlives the benchmark, whatever path the caller leaves by; the child also gets
// SIGKILL if the benchmark itself dies. Owned and used by one thread.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "common/error.h"

namespace ember::bench {

class ChildProcess {
 public:
  // Called on the drain thread for each line of output; returns a value to remember (the first
  // one wins, see WaitForMatch) or nothing.
  using LineMatcher = std::function<std::optional<int>(std::string_view)>;

  // Starts argv[0] (a path, not searched on PATH) with `argv`. Fails when the program cannot
  // be started (not found, not executable).
  [[nodiscard]] static Result<std::unique_ptr<ChildProcess>> Start(
      const std::vector<std::string>& argv, LineMatcher matcher);
  ~ChildProcess();
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  pid_t pid() const { return pid_; }

  // Waits until the matcher has returned a value, the child's output ends (it exited) or
  // `deadline` passes; the matched value, or nothing.
  std::optional<int> WaitForMatch(std::chrono::steady_clock::time_point deadline);

  // The child's exit described in words ("exited with status 1", "killed by signal 9") once
  // it has ended, without waiting; nothing while it runs.
  std::optional<std::string> ExitIfEnded();

  // The peak resident set size (VmHWM) in bytes, read from /proc; 0 when unavailable.
  std::int64_t PeakRssBytes() const;

  // Sends SIGTERM, waits up to `grace`, then SIGKILL; reaps the child and joins the drain
  // thread. Returns how it ended. Idempotent.
  std::string Stop(std::chrono::milliseconds grace);

  // The last lines of output (at most kKeptLines), oldest first, joined with '\n'.
  std::string LastLines() const;

  static constexpr std::size_t kKeptLines = 20;

 private:
  ChildProcess(pid_t pid, int output_fd, LineMatcher matcher);
  void Drain();
  void OnLine(std::string_view line);

  pid_t pid_;
  int output_fd_;
  LineMatcher matcher_;
  std::optional<std::string> exit_;  // set once reaped

  mutable std::mutex mu_;
  std::condition_variable changed_;
  std::deque<std::string> lines_;  // GUARDED_BY(mu_)
  std::optional<int> match_;       // GUARDED_BY(mu_)
  bool output_ended_ = false;      // GUARDED_BY(mu_)
  std::thread drain_;
};

// A TCP port on 127.0.0.1 that was free a moment ago (bound to port 0, read back, released).
[[nodiscard]] Result<int> PickFreePort();

}  // namespace ember::bench
