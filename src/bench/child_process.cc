#include "bench/child_process.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <system_error>

#include "common/log.h"

namespace ember::bench {
namespace {

std::string ErrnoText(int err) { return std::error_code(err, std::system_category()).message(); }

std::string DescribeStatus(int status) {
  if (WIFEXITED(status)) return StrCat("exited with status ", WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return StrCat("killed by signal ", WTERMSIG(status));
  return StrCat("ended with wait status ", status);
}

// Runs in the forked child: only async-signal-safe calls until exec. Reports a failed exec's
// errno on `error_fd` (close-on-exec, so a successful exec closes it unwritten).
[[noreturn]] void ExecChild(char* const* argv, int output_fd, int error_fd, pid_t parent) {
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (::getppid() != parent) ::_exit(127);  // the benchmark died before prctl took effect
  const int null_fd = ::open("/dev/null", O_RDONLY);
  if (null_fd >= 0) ::dup2(null_fd, STDIN_FILENO);
  ::dup2(output_fd, STDOUT_FILENO);
  ::dup2(output_fd, STDERR_FILENO);
  ::execv(argv[0], argv);
  const int err = errno;
  [[maybe_unused]] ssize_t n = ::write(error_fd, &err, sizeof(err));
  ::_exit(127);
}

}  // namespace

Result<std::unique_ptr<ChildProcess>> ChildProcess::Start(const std::vector<std::string>& argv,
                                                          LineMatcher matcher) {
  if (argv.empty()) return InvalidArgument("no program to start");
  std::vector<char*> args;
  for (const std::string& arg : argv) args.push_back(const_cast<char*>(arg.c_str()));
  args.push_back(nullptr);
  int output[2], exec_error[2];
  if (::pipe2(output, O_CLOEXEC) != 0) return Internal("pipe: " + ErrnoText(errno));
  if (::pipe2(exec_error, O_CLOEXEC) != 0) {
    ::close(output[0]);
    ::close(output[1]);
    return Internal("pipe: " + ErrnoText(errno));
  }
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid == 0) ExecChild(args.data(), output[1], exec_error[1], parent);
  const int fork_errno = errno;
  ::close(output[1]);
  ::close(exec_error[1]);
  if (pid < 0) {
    ::close(output[0]);
    ::close(exec_error[0]);
    return Internal("fork: " + ErrnoText(fork_errno));
  }
  int child_errno = 0;
  ssize_t n;
  do {
    n = ::read(exec_error[0], &child_errno, sizeof(child_errno));
  } while (n < 0 && errno == EINTR);
  ::close(exec_error[0]);
  if (n == sizeof(child_errno)) {
    ::waitpid(pid, nullptr, 0);
    ::close(output[0]);
    return InvalidArgument(StrCat("cannot run ", argv[0], ": ", ErrnoText(child_errno)));
  }
  return std::unique_ptr<ChildProcess>(new ChildProcess(pid, output[0], std::move(matcher)));
}

ChildProcess::ChildProcess(pid_t pid, int output_fd, LineMatcher matcher)
    : pid_(pid), output_fd_(output_fd), matcher_(std::move(matcher)) {
  drain_ = std::thread([this] { Drain(); });
}

ChildProcess::~ChildProcess() { Stop(std::chrono::seconds(10)); }

void ChildProcess::Drain() {
  std::string partial;
  char buf[4096];
  while (true) {
    const ssize_t n = ::read(output_fd_, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    partial.append(buf, static_cast<std::size_t>(n));
    std::size_t start = 0;
    for (std::size_t end; (end = partial.find('\n', start)) != std::string::npos; start = end + 1) {
      OnLine(std::string_view(partial).substr(start, end - start));
    }
    partial.erase(0, start);
  }
  if (!partial.empty()) OnLine(partial);
  std::lock_guard lock(mu_);
  output_ended_ = true;
  changed_.notify_all();
}

void ChildProcess::OnLine(std::string_view line) {
  std::optional<int> matched = matcher_ ? matcher_(line) : std::nullopt;
  std::lock_guard lock(mu_);
  lines_.emplace_back(line);
  if (lines_.size() > kKeptLines) lines_.pop_front();
  if (matched && !match_) {
    match_ = matched;
    changed_.notify_all();
  }
}

std::optional<int> ChildProcess::WaitForMatch(std::chrono::steady_clock::time_point deadline) {
  std::unique_lock lock(mu_);
  changed_.wait_until(lock, deadline, [this] { return match_.has_value() || output_ended_; });
  return match_;
}

std::optional<std::string> ChildProcess::ExitIfEnded() {
  if (exit_) return exit_;
  int status = 0;
  pid_t got;
  do {
    got = ::waitpid(pid_, &status, WNOHANG);
  } while (got < 0 && errno == EINTR);
  if (got == pid_) exit_ = DescribeStatus(status);
  return exit_;
}

std::int64_t ChildProcess::PeakRssBytes() const {
  std::ifstream status("/proc/" + std::to_string(pid_) + "/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.starts_with("VmHWM:"))
      return std::strtoll(line.c_str() + 6, nullptr, 10) * 1024;  // "N kB"
  }
  return 0;
}

std::string ChildProcess::Stop(std::chrono::milliseconds grace) {
  if (!ExitIfEnded()) {
    ::kill(pid_, SIGTERM);
    const auto deadline = std::chrono::steady_clock::now() + grace;
    while (!ExitIfEnded() && std::chrono::steady_clock::now() < deadline) {
      ::usleep(2000);
    }
    if (!exit_) {
      log::Warn("pid ", pid_, " ignored SIGTERM for ", grace.count(), " ms; killing it");
      ::kill(pid_, SIGKILL);
      int status = 0;
      while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
      }
      exit_ = DescribeStatus(status);
    }
  }
  if (drain_.joinable()) drain_.join();
  if (output_fd_ >= 0) ::close(output_fd_);
  output_fd_ = -1;
  return *exit_;
}

std::string ChildProcess::LastLines() const {
  std::lock_guard lock(mu_);
  std::string text;
  for (const std::string& line : lines_) {
    if (!text.empty()) text += '\n';
    text += line;
  }
  return text;
}

Result<int> PickFreePort() {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return Internal("socket: " + ErrnoText(errno));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  const bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
                  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0;
  const int err = errno;
  ::close(fd);
  if (!ok) return Unavailable("cannot find a free port: " + ErrnoText(err));
  return ntohs(addr.sin_port);
}

}  // namespace ember::bench
