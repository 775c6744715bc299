// The two POSIX steps every durable file write in ember takes: write all of a buffer, and sync
// the directory a file was renamed into (the repack cache, the prefix cache's disk tier, the
// tenant store).
#pragma once

#include <atomic>
#include <filesystem>
#include <string_view>

namespace ember {

// Writes all of `bytes` at `fd`'s offset: retries short writes and EINTR, in chunks of at most
// 8 MiB, and gives up before a chunk once `stop` (when given) is set. false with errno set
// (ECANCELED when stopped).
[[nodiscard]] bool WriteAllToFd(int fd, std::string_view bytes,
                                const std::atomic<bool>* stop = nullptr);

// fsyncs a directory, so that a rename into it survives a crash. false with errno set.
bool SyncDirectory(const std::filesystem::path& dir);

}  // namespace ember
