#include "common/file_io.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

namespace ember {
namespace {

// One write(2) of a multi-gigabyte region holds the stop flag unread for its whole duration.
constexpr std::size_t kWriteChunk = std::size_t{8} << 20;

}  // namespace

bool WriteAllToFd(int fd, std::string_view bytes, const std::atomic<bool>* stop) {
  while (!bytes.empty()) {
    if (stop != nullptr && stop->load()) {
      errno = ECANCELED;
      return false;
    }
    const ssize_t n = ::write(fd, bytes.data(), std::min(bytes.size(), kWriteChunk));
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    bytes.remove_prefix(static_cast<std::size_t>(n));
  }
  return true;
}

bool SyncDirectory(const std::filesystem::path& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return false;
  const bool ok = ::fsync(fd) == 0;
  const int saved = errno;
  ::close(fd);
  errno = saved;
  return ok;
}

}  // namespace ember
