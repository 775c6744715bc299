#include "engine/llama/repack_cache.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "common/file_io.h"
#include "common/hash.h"
#include "common/log.h"

namespace ember::engine {
namespace {

constexpr char kMagic[8] = {'E', 'M', 'B', 'R', 'P', 'A', 'C', 'K'};
constexpr std::uint32_t kFormat = 1;
constexpr std::size_t kHeaderBytes = 4096;  // the payload starts page-aligned
constexpr std::size_t kHeaderHashAt = kHeaderBytes - sizeof(std::uint64_t);

// The fixed part of the header; the identity string follows it, then zeros, and the last
// 8 bytes hold Hash64 of everything before them.
struct HeaderFixed {
  char magic[8];
  std::uint32_t format;
  std::uint32_t index;
  std::uint64_t payload_bytes;
  std::uint64_t payload_hash;
  std::uint64_t model_hash;
  std::uint32_t identity_bytes;
  std::uint32_t reserved;
};
static_assert(sizeof(HeaderFixed) == 48);
constexpr std::size_t kMaxIdentity = kHeaderHashAt - sizeof(HeaderFixed);

std::string Errno() { return std::strerror(errno); }

std::size_t PageSize() {
  static const std::size_t page = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
  return page;
}

std::size_t RoundUp(std::size_t n, std::size_t to) { return (n + to - 1) / to * to; }

// Writes `text` to `path` atomically (temp file, fsync unless !sync, rename).
bool WriteSmallFileAtomically(const std::string& path, const std::string& text, bool sync = true) {
  const std::string tmp = StrCat(path, ".tmp.", getpid(), ".memo");
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return false;
  const bool ok = WriteAllToFd(fd, text) && (!sync || ::fsync(fd) == 0);
  ::close(fd);
  if (!ok || ::rename(tmp.c_str(), path.c_str()) != 0) {
    ::unlink(tmp.c_str());
    return false;
  }
  return true;
}

// What identifies one version of a file without reading it: any write changes ctime.
std::string StatIdentity(const struct stat& st) {
  return StrCat(st.st_dev, " ", st.st_ino, " ", st.st_size, " ", st.st_mtim.tv_sec, ".",
                st.st_mtim.tv_nsec, " ", st.st_ctim.tv_sec, ".", st.st_ctim.tv_nsec);
}

// This boot of the machine (Linux); empty where unknown, and then nothing is stamped.
const std::string& BootId() {
  static const std::string id = [] {
    std::string line;
    std::ifstream in("/proc/sys/kernel/random/boot_id");
    std::getline(in, line);
    return line.size() == 36 ? line : std::string();
  }();
  return id;
}

// A hit refreshes a file's mtime (its last use, for MakeRoom) when it is older than this; the
// refresh is a write that voids the stamp, so it is not done at every start.
constexpr auto kLastUseGranularity = std::chrono::hours(1);

std::chrono::system_clock::time_point ToTimePoint(const struct timespec& ts) {
  return std::chrono::system_clock::time_point(
      std::chrono::duration_cast<std::chrono::system_clock::duration>(
          std::chrono::seconds(ts.tv_sec) + std::chrono::nanoseconds(ts.tv_nsec)));
}

// A stamp's one line; Stamped compares it whole.
std::string StampLine(const std::string& stat_identity, std::uint64_t payload_hash) {
  return StrCat("v1 ", BootId(), " ", stat_identity, " ", Hex64(payload_hash));
}

}  // namespace

Result<std::unique_ptr<RepackCache>> RepackCache::Open(std::string dir, std::string model_path,
                                                       std::string identity, int threads,
                                                       RepackCacheSettings settings) {
  if (identity.size() > kMaxIdentity) return InvalidArgument("repack cache identity too long");
  std::error_code ec;
  std::filesystem::create_directories(std::filesystem::path(dir) / "models", ec);
  if (!ec) std::filesystem::create_directories(std::filesystem::path(dir) / "verified", ec);
  if (ec) return Unavailable(StrCat("cannot create the cache directory ", dir, ": ", ec.message()));
  if (::access(dir.c_str(), W_OK | X_OK) != 0) {
    return Unavailable(StrCat("the cache directory ", dir, " is not writable: ", Errno()));
  }
  const std::string canonical = std::filesystem::weakly_canonical(model_path, ec).string();
  std::unique_ptr<RepackCache> cache(new RepackCache(std::move(dir),
                                                     ec ? std::move(model_path) : canonical,
                                                     std::move(identity), threads, settings));
  cache->RemoveStaleTemporaries();
  cache->model_hash_ = cache->ReadMemo();
  return cache;
}

std::unique_ptr<RepackCache> RepackCache::MemoryOnly() {
  return std::unique_ptr<RepackCache>(new RepackCache("", "", "", 1, {}));
}

RepackCache::RepackCache(std::string dir, std::string model_path, std::string identity, int threads,
                         RepackCacheSettings settings)
    : dir_(std::move(dir)),
      model_path_(std::move(model_path)),
      identity_(std::move(identity)),
      threads_(std::max(1, threads)),
      settings_(settings) {}

RepackCache::~RepackCache() {
  stop_ = true;
  if (prefaulter_.joinable()) prefaulter_.join();
  if (writer_.joinable()) writer_.join();
  UnmapPrefetched();
  std::lock_guard lock(mu_);
  for (const Region& r : regions_) ::munmap(r.map, r.map_len);
}

// One set of files per model path: a new model version or ember build replaces the old files
// instead of piling up beside them (the header, not the name, is what is trusted).
std::string RepackCache::PathPrefix() const {
  return StrCat("repack-", Hex64(Hash64(model_path_)).substr(0, 12), "-");
}

std::string RepackCache::KeyPrefix() const {
  const std::string key =
      Hex64(Hash64(StrCat(identity_, "|", model_hash_ ? Hex64(*model_hash_) : "?")));
  return StrCat(PathPrefix(), key.substr(0, 12), "-");
}

std::string RepackCache::FilePath(int index) const {
  return StrCat(dir_, "/", KeyPrefix(), index, ".bin");
}

std::string RepackCache::MemoPath() const {
  return StrCat(dir_, "/models/", Hex64(Hash64(model_path_)));
}

std::optional<std::uint64_t> RepackCache::ReadMemo() const {
  struct stat st{};
  if (::stat(model_path_.c_str(), &st) != 0) return std::nullopt;
  std::ifstream in(MemoPath());
  std::string line;
  if (!std::getline(in, line)) return std::nullopt;
  const std::string prefix = StrCat("v1 ", StatIdentity(st), " ");
  if (!line.starts_with(prefix) || line.size() != prefix.size() + 16) return std::nullopt;
  std::uint64_t hash = 0;
  std::istringstream(line.substr(prefix.size())) >> std::hex >> hash;
  return hash;
}

void RepackCache::WriteMemo(std::uint64_t hash) const {
  struct stat st{};
  if (::stat(model_path_.c_str(), &st) != 0) return;
  const std::string path = MemoPath();
  if (!WriteSmallFileAtomically(path, StrCat("v1 ", StatIdentity(st), " ", Hex64(hash), "\n"))) {
    log::Warn("repack cache: cannot write ", path, ": ", Errno());
  }
}

std::string RepackCache::StampPath(const std::string& file) const {
  return StrCat(dir_, "/verified/", std::filesystem::path(file).filename().string());
}

bool RepackCache::Stamped(const std::string& file, const std::string& stat_identity,
                          std::uint64_t payload_hash) const {
  if (settings_.verify_every_start || BootId().empty()) return false;
  std::ifstream in(StampPath(file));
  std::string line;
  return std::getline(in, line) && line == StampLine(stat_identity, payload_hash);
}

void RepackCache::WriteStamp(const std::string& file, const std::string& stat_identity,
                             std::chrono::system_clock::time_point changed,
                             std::uint64_t payload_hash) const {
  if (BootId().empty() || std::chrono::system_clock::now() - changed < settings_.stamp_settle) {
    return;
  }
  // Not synced: a stamp lost in a crash only costs one more hashing; the rename keeps it whole.
  WriteSmallFileAtomically(StampPath(file), StampLine(stat_identity, payload_hash) + "\n",
                           /*sync=*/false);
}

bool RepackCache::RemoveFileAndStamp(const std::filesystem::path& file) const {
  std::error_code ec;
  const bool removed = std::filesystem::remove(file, ec);
  std::filesystem::remove(StampPath(file.string()), ec);
  return removed;
}

void RepackCache::RemoveStaleTemporaries() const {
  std::error_code ec;
  // Stamps of cache files that are gone (deleted by hand, or by an older ember).
  for (const auto& entry :
       std::filesystem::directory_iterator(std::filesystem::path(dir_) / "verified", ec)) {
    const std::string name = entry.path().filename().string();
    if (name.find(".tmp.") == std::string::npos &&
        !std::filesystem::exists(std::filesystem::path(dir_) / name, ec)) {
      std::filesystem::remove(entry.path(), ec);
    }
  }
  for (const auto& dir : {std::filesystem::path(dir_), std::filesystem::path(dir_) / "models",
                          std::filesystem::path(dir_) / "verified"}) {
    for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
      const std::string name = entry.path().filename().string();
      const auto at = name.find(".tmp.");
      if (at == std::string::npos) continue;
      const long pid = std::strtol(name.c_str() + at + 5, nullptr, 10);
      if (pid > 0 && ::kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH) {
        std::filesystem::remove(entry.path(), ec);
      }
    }
  }
}

std::optional<RepackCache::Region> RepackCache::MapFile(int index, int hash_threads) {
  const std::string path = FilePath(index);
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return std::nullopt;  // not cached yet
  auto reject = [&](std::string_view why) -> std::optional<Region> {
    ::close(fd);
    ++stats_.rejected;
    log::Warn("repack cache: ignoring ", path, ": ", why, "; it will be rebuilt");
    return std::nullopt;
  };
  struct stat st{};
  if (::fstat(fd, &st) != 0) return reject(StrCat("cannot stat it: ", Errno()));
  if (static_cast<std::size_t>(st.st_size) < kHeaderBytes) return reject("truncated header");
  char header[kHeaderBytes];
  if (::pread(fd, header, kHeaderBytes, 0) != static_cast<ssize_t>(kHeaderBytes)) {
    return reject("cannot read its header");
  }
  HeaderFixed h;
  std::memcpy(&h, header, sizeof h);
  std::uint64_t header_hash;
  std::memcpy(&header_hash, header + kHeaderHashAt, sizeof header_hash);
  if (std::memcmp(h.magic, kMagic, sizeof kMagic) != 0) return reject("not a repack cache file");
  if (Hash64(header, kHeaderHashAt) != header_hash) return reject("corrupt header");
  if (h.format != kFormat) return reject(StrCat("format ", h.format, ", expected ", kFormat));
  if (h.identity_bytes > kMaxIdentity ||
      std::string_view(header + sizeof h, h.identity_bytes) != identity_) {
    return reject("written by another ggml build or for another CPU (foreign fingerprint)");
  }
  if (!model_hash_ || h.model_hash != *model_hash_) {
    return reject("written for another version of the model file (stale)");
  }
  if (h.index != static_cast<std::uint32_t>(index)) return reject("for another buffer");
  const std::size_t size = h.payload_bytes;
  if (static_cast<std::size_t>(st.st_size) != kHeaderBytes + size) {
    return reject(StrCat("truncated or wrong size (", st.st_size, " bytes, expected ",
                         kHeaderBytes + size, ")"));
  }
  const std::size_t len = kHeaderBytes + size;
  // Read-only: ggml never writes into weights, and a writable private mapping would make
  // MAP_POPULATE copy every page (it pre-faults for write).
  void* map = ::mmap(nullptr, len, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, 0);
  ::close(fd);
  if (map == MAP_FAILED) {
    ++stats_.rejected;
    log::Warn("repack cache: cannot map ", path, ": ", Errno());
    return std::nullopt;
  }
  char* payload = static_cast<char*>(map) + kHeaderBytes;
  const std::string stat_identity = StatIdentity(st);
  // The last-use refresh for MakeRoom's eviction (best effort, to the hour): a write, so it
  // voids any stamp.
  const bool refresh_last_use =
      std::chrono::system_clock::now() - ToTimePoint(st.st_mtim) >= kLastUseGranularity;
  if (Stamped(path, stat_identity, h.payload_hash)) {
    ++stats_.trusted;
  } else {
    const auto t0 = std::chrono::steady_clock::now();
    const std::uint64_t payload_hash = ChunkedHash64(payload, size, hash_threads);
    stats_.verify_seconds +=
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (payload_hash != h.payload_hash) {
      ::munmap(map, len);
      ++stats_.rejected;
      log::Warn("repack cache: ignoring ", path,
                ": corrupt (its content does not match its hash); it will be rebuilt");
      return std::nullopt;
    }
    if (!refresh_last_use) WriteStamp(path, stat_identity, ToTimePoint(st.st_ctim), h.payload_hash);
  }
  if (refresh_last_use) ::utimensat(AT_FDCWD, path.c_str(), nullptr, 0);
  return Region{payload, map, len, size, index, true};
}

void RepackCache::Prefetch() {
  if (!model_hash_ || prefetcher_.joinable()) return;
  // One thread: the loading thread is busy building the tokenizer meanwhile.
  prefetcher_ = std::thread([this] {
    for (int index = 0; ::access(FilePath(index).c_str(), F_OK) == 0; ++index) {
      prefetched_.push_back(MapFile(index, 1));
    }
  });
}

bool RepackCache::ExpectsHit() const {
  return model_hash_.has_value() && ::access(FilePath(0).c_str(), F_OK) == 0;
}

void RepackCache::UnmapPrefetched() {
  if (prefetcher_.joinable()) prefetcher_.join();
  for (auto& r : prefetched_) {
    if (r) ::munmap(r->map, r->map_len);
  }
  prefetched_.clear();
}

void* RepackCache::Alloc(std::size_t size, bool* prefilled) {
  if (prefetcher_.joinable()) prefetcher_.join();
  const int index = next_index_++;
  std::optional<Region> region;
  if (index < static_cast<int>(prefetched_.size())) {
    region = std::exchange(prefetched_[index], std::nullopt);
  } else if (model_hash_) {
    region = MapFile(index, threads_);
  }
  if (region && region->size != size) {
    ++stats_.rejected;
    log::Warn("repack cache: ignoring ", FilePath(index), ": it holds ", region->size,
              " bytes where this load needs ", size, "; it will be rebuilt");
    ::munmap(region->map, region->map_len);
    region.reset();
  }
  if (region) {
    ++stats_.hits;
    stats_.mapped_bytes += size;
    *prefilled = true;
  } else {
    const std::size_t len = RoundUp(size, PageSize());
    void* mem = ::mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) return nullptr;  // ggml's own allocator reports the failure
    if (!prefaulter_.joinable()) {
      // The loading thread repacks from the start; fault the pages in from the end on a second
      // thread meanwhile: first touch of fresh memory, not the conversion, is most of a
      // repack's time. MADV_POPULATE_WRITE never changes a page's content, so it is safe beside
      // the writer. (Transparent huge pages were slower still: direct compaction stalls.)
      prefaulter_ = std::thread([mem, len] {
        constexpr std::size_t kStep = std::size_t{2} << 20;
        for (std::size_t end = len; end > 0;) {
          const std::size_t start = end > kStep ? end - kStep : 0;
          if (::madvise(static_cast<char*>(mem) + start, end - start, MADV_POPULATE_WRITE) != 0)
            break;
          end = start;
        }
      });
    }
    ++stats_.misses;
    region = Region{mem, mem, len, size, index, false};
    *prefilled = false;
  }
  std::lock_guard lock(mu_);
  regions_.push_back(*region);
  return region->base;
}

void RepackCache::Free(void* base, std::size_t /*size*/) {
  if (prefaulter_.joinable() && prefaulter_.get_id() != std::this_thread::get_id()) {
    prefaulter_.join();
  }
  if (writer_.joinable() && writer_.get_id() != std::this_thread::get_id()) {
    stop_ = true;  // the writer reads these regions: stop it before they go
    writer_.join();
  }
  std::lock_guard lock(mu_);
  auto it = std::find_if(regions_.begin(), regions_.end(),
                         [base](const Region& r) { return r.base == base; });
  if (it == regions_.end()) return;
  ::munmap(it->map, it->map_len);
  regions_.erase(it);
}

void RepackCache::Persist() {
  if (prefaulter_.joinable()) prefaulter_.join();
  UnmapPrefetched();  // files beyond the buffers this load asked for
  bool fresh = false;
  {
    std::lock_guard lock(mu_);
    fresh =
        std::any_of(regions_.begin(), regions_.end(), [](const Region& r) { return !r.from_file; });
  }
  if (!fresh || writer_.joinable() || dir_.empty()) return;
  writer_ = std::thread([this] { WriteAll(); });
}

int RepackCache::WaitPersisted() {
  if (writer_.joinable()) writer_.join();
  return written_.load();
}

void RepackCache::WriteAll() {
  const auto t0 = std::chrono::steady_clock::now();
  if (!model_hash_) {
    // First load of this file (or it changed): hash it now, off the start-up path, on one
    // thread so serving keeps the rest.
    const int fd = ::open(model_path_.c_str(), O_RDONLY | O_CLOEXEC);
    struct stat st{};
    if (fd < 0 || ::fstat(fd, &st) != 0) {
      log::Warn("repack cache: cannot read ", model_path_, ": ", Errno());
      if (fd >= 0) ::close(fd);
      return;
    }
    const std::size_t len = static_cast<std::size_t>(st.st_size);
    void* map = len > 0 ? ::mmap(nullptr, len, PROT_READ, MAP_PRIVATE, fd, 0) : MAP_FAILED;
    ::close(fd);
    if (map == MAP_FAILED) {
      log::Warn("repack cache: cannot map ", model_path_, ": ", Errno());
      return;
    }
    ::madvise(map, len, MADV_SEQUENTIAL);
    const std::uint64_t hash = ChunkedHash64(map, len, 1);
    ::munmap(map, len);
    if (stop_) return;
    model_hash_ = hash;
    WriteMemo(hash);
  }
  std::vector<Region> fresh;
  {
    std::lock_guard lock(mu_);
    for (const Region& r : regions_) {
      if (!r.from_file) fresh.push_back(r);
    }
  }
  std::uint64_t need = 0;
  for (const Region& r : fresh) need += kHeaderBytes + r.size;
  if (fresh.empty() || !MakeRoom(need)) return;
  std::size_t bytes = 0;
  for (const Region& r : fresh) {
    if (stop_ || !WriteFile(r)) return;
    ++written_;
    bytes += r.size;
  }
  log::Info(
      "repack cache: wrote ", written_.load(), " file(s), ", bytes >> 20, " MiB in ",
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0)
          .count(),
      " ms");
}

bool RepackCache::MakeRoom(std::uint64_t need) {
  // The cache files in the directory, grouped by model path ("repack-<path tag>-...").
  struct Group {
    std::vector<std::filesystem::path> files;
    std::uint64_t bytes = 0;
    std::filesystem::file_time_type last_use = std::filesystem::file_time_type::min();
  };
  std::map<std::string, Group> others;
  std::uint64_t total = 0;
  const std::string prefix = PathPrefix();
  const std::string keep = KeyPrefix();
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(dir_, ec)) {
    const std::string name = entry.path().filename().string();
    if (!name.starts_with("repack-") || !name.ends_with(".bin")) continue;
    if (name.starts_with(prefix)) {
      // This model path: files of another model version or build are garbage now, and the
      // current key's are about to be replaced.
      if (!name.starts_with(keep)) RemoveFileAndStamp(entry.path());
      continue;
    }
    std::error_code size_ec, time_ec;
    const std::uint64_t size = entry.file_size(size_ec);
    const auto mtime = entry.last_write_time(time_ec);
    if (size_ec || time_ec) continue;  // gone meanwhile
    const std::size_t tag_end = name.find('-', std::strlen("repack-"));
    Group& g = others[name.substr(0, tag_end)];
    g.files.push_back(entry.path());
    g.bytes += size;
    g.last_use = std::max(g.last_use, mtime);
    total += size;
  }
  struct statvfs fs{};
  if (::statvfs(dir_.c_str(), &fs) != 0) {
    log::Warn("repack cache: cannot read the free space of ", dir_, ": ", Errno(),
              "; not writing the cache");
    skipped_for_space_ = true;
    return false;
  }
  const std::uint64_t free_bytes = static_cast<std::uint64_t>(fs.f_bavail) * fs.f_frsize;
  // Bytes of other models to delete so that `need` fits both limits.
  std::uint64_t to_free = 0;
  if (need + settings_.min_free_bytes > free_bytes) {
    to_free = need + settings_.min_free_bytes - free_bytes;
  }
  if (settings_.max_bytes > 0 && total + need > settings_.max_bytes) {
    to_free = std::max(to_free, total + need - settings_.max_bytes);
  }
  const bool fits_at_all =
      (settings_.max_bytes == 0 || need <= settings_.max_bytes) && to_free <= total;
  if (!fits_at_all) {
    log::Warn("repack cache: not writing ", need >> 20, " MiB for ", model_path_, ": ",
              settings_.max_bytes > 0 && need > settings_.max_bytes
                  ? StrCat("more than --cache-max-size (", settings_.max_bytes >> 20, " MiB)")
                  : StrCat("the filesystem has ", free_bytes >> 20, " MiB free and ",
                           settings_.min_free_bytes >> 20,
                           " MiB must stay free (--cache-min-free); other models' cache files "
                           "hold ",
                           total >> 20, " MiB"),
              "; serving on, without a cache for this model");
    skipped_for_space_ = true;
    return false;
  }
  std::vector<std::pair<std::string, Group*>> lru;
  for (auto& [tag, g] : others) lru.emplace_back(tag, &g);
  std::sort(lru.begin(), lru.end(),
            [](const auto& a, const auto& b) { return a.second->last_use < b.second->last_use; });
  std::uint64_t freed = 0;
  for (const auto& [tag, g] : lru) {
    if (freed >= to_free) break;
    for (const auto& file : g->files) {
      if (RemoveFileAndStamp(file)) ++evicted_;
    }
    freed += g->bytes;
    log::Info("repack cache: deleted the least recently used files ", tag, "-* (", g->bytes >> 20,
              " MiB) to make room for ", model_path_);
  }
  return true;
}

bool RepackCache::WriteFile(const Region& region) {
  static std::atomic<int> counter{0};
  const std::string path = FilePath(region.index);
  const std::string tmp = StrCat(path, ".tmp.", getpid(), ".", counter++);
  char header[kHeaderBytes] = {};
  HeaderFixed h{};
  std::memcpy(h.magic, kMagic, sizeof kMagic);
  h.format = kFormat;
  h.index = static_cast<std::uint32_t>(region.index);
  h.payload_bytes = region.size;
  h.payload_hash = ChunkedHash64(region.base, region.size, 1);
  h.model_hash = *model_hash_;
  h.identity_bytes = static_cast<std::uint32_t>(identity_.size());
  std::memcpy(header, &h, sizeof h);
  std::memcpy(header + sizeof h, identity_.data(), identity_.size());
  const std::uint64_t header_hash = Hash64(header, kHeaderHashAt);
  std::memcpy(header + kHeaderHashAt, &header_hash, sizeof header_hash);

  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) {
    log::Warn("repack cache: cannot create ", tmp, ": ", Errno());
    return false;
  }
  // Reserve the space first, so a full disk fails here rather than halfway through.
  int rc = ::posix_fallocate(fd, 0, static_cast<off_t>(kHeaderBytes + region.size));
  bool ok = rc == 0 || rc == EOPNOTSUPP || rc == EINVAL;
  if (!ok) errno = rc;
  ok = ok && WriteAllToFd(fd, {header, kHeaderBytes}, &stop_) &&
       WriteAllToFd(fd, {static_cast<const char*>(region.base), region.size}, &stop_) &&
       ::fsync(fd) == 0;
  const int saved = errno;
  ::close(fd);
  if (!ok || ::rename(tmp.c_str(), path.c_str()) != 0) {
    errno = ok ? errno : saved;
    if (errno != ECANCELED) {
      log::Warn("repack cache: cannot write ", path, ": ", Errno(),
                "; serving on, without a cache for this model");
    }
    ::unlink(tmp.c_str());
    return false;
  }
  SyncDirectory(dir_);
  return true;
}

}  // namespace ember::engine
