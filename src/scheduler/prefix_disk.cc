#include "scheduler/prefix_disk.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <iterator>
#include <system_error>

#include "common/file_io.h"
#include "common/log.h"
#include "common/sha256.h"

namespace ember::scheduler {

namespace fs = std::filesystem;

namespace {

constexpr char kMagic[8] = {'E', 'M', 'B', 'R', 'P', 'F', 'X', '\0'};
constexpr std::uint32_t kVersion = 1;
constexpr std::uint32_t kInvariantFlag = 1;
constexpr std::size_t kMaxQueued = 4;  // entries waiting for the writer

std::string_view AsChars(std::span<const std::uint8_t> bytes) {
  return {reinterpret_cast<const char*>(bytes.data()), bytes.size()};
}

template <typename T>
void Put(std::string& out, T value) {
  char buf[sizeof(T)];
  std::memcpy(buf, &value, sizeof(T));
  out.append(buf, sizeof(T));
}

void PutString(std::string& out, std::string_view s) {
  Put<std::uint32_t>(out, static_cast<std::uint32_t>(s.size()));
  out.append(s);
}

// Reads the header's fields in order; fails (ok = false) past the end.
struct Reader {
  std::string_view in;
  bool ok = true;
  template <typename T>
  T Get() {
    T value{};
    if (in.size() < sizeof(T)) {
      ok = false;
      return value;
    }
    std::memcpy(&value, in.data(), sizeof(T));
    in.remove_prefix(sizeof(T));
    return value;
  }
  std::string_view Bytes(std::uint64_t n) {
    if (in.size() < n) {
      ok = false;
      return {};
    }
    std::string_view out = in.substr(0, n);
    in.remove_prefix(n);
    return out;
  }
};

// A temporary file of a process that is gone: "<name>.pfx.tmp.<pid>".
bool StaleTemp(const fs::path& path) {
  const std::string name = path.filename().string();
  const std::size_t at = name.rfind(".tmp.");
  if (at == std::string::npos) return false;
  const long pid = std::strtol(name.c_str() + at + 5, nullptr, 10);
  return pid > 0 && pid != ::getpid() && ::kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH;
}

struct FileInfo {
  fs::path path;
  std::uint64_t size = 0;
  fs::file_time_type mtime;
};

// The .pfx files directly in `dir`.
std::vector<FileInfo> ListFiles(const fs::path& dir) {
  std::vector<FileInfo> files;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    if (it->path().extension() != ".pfx") continue;
    std::error_code size_ec, time_ec;
    const auto size = it->file_size(size_ec);
    const auto mtime = it->last_write_time(time_ec);
    if (size_ec || time_ec) continue;
    files.push_back({it->path(), size, mtime});
  }
  return files;
}

}  // namespace

std::string PrefixFileName(std::string_view key, std::string_view scope, bool invariant,
                           std::span<const engine::Token> tokens) {
  std::string text;
  PutString(text, key);
  PutString(text, scope);
  Put<std::uint32_t>(text, invariant ? kInvariantFlag : 0);
  text.append(reinterpret_cast<const char*>(tokens.data()), tokens.size_bytes());
  return Sha256Hex(text).substr(0, 40);
}

std::string EncodePrefixHeader(std::string_view key, std::string_view scope, bool invariant,
                               std::span<const engine::Token> tokens, int n_pos,
                               std::span<const std::uint8_t> blob) {
  std::string out(kMagic, sizeof(kMagic));
  Put<std::uint32_t>(out, kVersion);
  Put<std::uint32_t>(out, invariant ? kInvariantFlag : 0);
  PutString(out, key);
  PutString(out, scope);
  Put<std::uint32_t>(out, static_cast<std::uint32_t>(tokens.size()));
  out.append(reinterpret_cast<const char*>(tokens.data()), tokens.size_bytes());
  Put<std::int32_t>(out, n_pos);
  Put<std::uint64_t>(out, blob.size());
  const auto digest = Sha256(AsChars(blob));
  out.append(reinterpret_cast<const char*>(digest.data()), digest.size());
  return out;
}

Result<PrefixRecord> DecodePrefixFile(std::string_view bytes, std::string_view name,
                                      std::string_view key) {
  Reader r{bytes};
  if (r.Bytes(sizeof(kMagic)) != std::string_view(kMagic, sizeof(kMagic))) {
    return Internal("not a prefix cache file (magic)");
  }
  if (const auto version = r.Get<std::uint32_t>(); !r.ok || version != kVersion) {
    return Internal(StrCat("format version ", version, ", not ", kVersion));
  }
  PrefixRecord rec;
  const auto flags = r.Get<std::uint32_t>();
  rec.invariant = (flags & kInvariantFlag) != 0;
  rec.key = std::string(r.Bytes(r.Get<std::uint32_t>()));
  if (!r.ok || rec.key != key) return Internal("written by another model, build or context");
  rec.scope = std::string(r.Bytes(r.Get<std::uint32_t>()));
  const auto n_tokens = r.Get<std::uint32_t>();
  const std::string_view tokens = r.Bytes(std::uint64_t{n_tokens} * sizeof(engine::Token));
  rec.n_pos = r.Get<std::int32_t>();
  const auto blob_size = r.Get<std::uint64_t>();
  const std::string_view digest = r.Bytes(32);
  if (!r.ok || n_tokens == 0 || rec.n_pos <= 0) return Internal("truncated or empty header");
  rec.tokens.resize(n_tokens);
  std::memcpy(rec.tokens.data(), tokens.data(), tokens.size());
  if (flags & ~kInvariantFlag ||
      PrefixFileName(rec.key, rec.scope, rec.invariant, rec.tokens) != name) {
    return Internal("the header does not match the file's name (damaged)");
  }
  if (r.in.size() != blob_size) return Internal("the blob's size does not match the header");
  const auto actual = Sha256(r.in);
  if (std::string_view(reinterpret_cast<const char*>(actual.data()), actual.size()) != digest) {
    return Internal("the blob's SHA-256 does not match the header (damaged)");
  }
  rec.blob.assign(r.in.begin(), r.in.end());
  return rec;
}

Result<std::unique_ptr<PrefixDisk>> PrefixDisk::Open(PrefixDiskOptions options) {
  const fs::path dir = options.root / Sha256Hex(options.key).substr(0, 32);
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) {
    return Unavailable(
        StrCat("cannot create the prefix cache directory ", dir.string(), ": ", ec.message()));
  }
  std::unique_ptr<PrefixDisk> disk(new PrefixDisk(std::move(options), dir));
  disk->loader_ = std::thread([raw = disk.get()] { raw->Load(); });
  disk->writer_ = std::thread([raw = disk.get()] { raw->WriteLoop(); });
  return disk;
}

PrefixDisk::PrefixDisk(PrefixDiskOptions options, fs::path dir)
    : options_(std::move(options)), dir_(std::move(dir)) {}

PrefixDisk::~PrefixDisk() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (loader_.joinable()) loader_.join();
  if (writer_.joinable()) writer_.join();
}

bool PrefixDisk::Write(std::string scope, std::vector<engine::Token> tokens,
                       std::shared_ptr<const engine::CellsSnapshot> cells) {
  if (cells == nullptr || cells->data().empty() || tokens.empty()) return false;
  {
    std::lock_guard lock(mu_);
    if (stop_ || queue_.size() >= kMaxQueued) return false;
    queue_.push_back({std::move(scope), std::move(tokens), std::move(cells)});
  }
  cv_.notify_all();
  return true;
}

std::vector<PrefixRecord> PrefixDisk::TakeLoaded() {
  std::unique_lock lock(mu_, std::try_to_lock);
  if (!lock.owns_lock()) return {};
  return std::exchange(loaded_, {});
}

void PrefixDisk::Flush() {
  std::unique_lock lock(mu_);
  done_cv_.wait(lock, [&] { return queue_.empty() && !writing_ && load_done_.load(); });
}

PrefixDiskStats PrefixDisk::stats() const {
  return {.writes = writes_.load(),
          .reads = reads_.load(),
          .errors = errors_.load(),
          .bytes = bytes_.load(),
          .entries = entries_.load()};
}

void PrefixDisk::Load() {
  std::vector<FileInfo> files;
  {
    std::lock_guard files_lock(files_mu_);
    std::error_code ec;
    for (fs::directory_iterator it(dir_, ec), end; !ec && it != end; it.increment(ec)) {
      std::error_code rm_ec;
      if (StaleTemp(it->path())) fs::remove(it->path(), rm_ec);
    }
    files = ListFiles(dir_);
  }
  // Most recently used first: those are the ones the RAM tier keeps when not all fit.
  std::sort(files.begin(), files.end(),
            [](const FileInfo& a, const FileInfo& b) { return a.mtime > b.mtime; });
  std::uint64_t loaded = 0;
  for (const FileInfo& file : files) {
    {
      std::lock_guard lock(mu_);
      if (stop_) break;
    }
    if (loaded + file.size > options_.load_bytes) continue;
    std::string bytes;
    {
      std::ifstream in(file.path, std::ios::binary);
      bytes.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
      if (!in.good() && !in.eof()) bytes.clear();
    }
    auto rec = DecodePrefixFile(bytes, file.path.stem().string(), options_.key);
    if (!rec) {
      ++errors_;
      log::Warn("prefix cache: deleting ", file.path.string(), ": ", rec.error().message);
      std::lock_guard files_lock(files_mu_);
      std::error_code ec;
      fs::remove(file.path, ec);
      continue;
    }
    loaded += file.size;
    ++reads_;
    std::lock_guard lock(mu_);
    loaded_.push_back(std::move(*rec));
  }
  Recount();
  {
    std::lock_guard lock(mu_);
    load_done_ = true;
  }
  done_cv_.notify_all();
}

void PrefixDisk::WriteLoop() {
  std::unique_lock lock(mu_);
  for (;;) {
    cv_.wait(lock, [&] { return stop_ || !queue_.empty(); });
    // Queued writes are finished before stopping: a clean shutdown keeps what was reused.
    if (queue_.empty()) return;
    Job job = std::move(queue_.front());
    queue_.pop_front();
    writing_ = true;
    lock.unlock();
    WriteOne(job);
    job = {};
    lock.lock();
    writing_ = false;
    done_cv_.notify_all();
  }
}

void PrefixDisk::WriteOne(const Job& job) {
  const std::span<const std::uint8_t> blob = job.cells->data();
  const bool invariant = job.cells->invariant();
  const std::string name = PrefixFileName(options_.key, job.scope, invariant, job.tokens);
  const fs::path path = dir_ / (name + ".pfx");
  std::lock_guard files_lock(files_mu_);
  std::error_code ec;
  if (fs::exists(path, ec)) {
    // Used again: the least recently used files go first when room is needed.
    fs::last_write_time(path, fs::file_time_type::clock::now(), ec);
    return;
  }
  const std::string header =
      EncodePrefixHeader(options_.key, job.scope, invariant, job.tokens, job.cells->n_pos(), blob);
  if (!MakeRoom(header.size() + blob.size())) return;
  const fs::path tmp = StrCat(path.string(), ".tmp.", ::getpid());
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  bool ok =
      fd >= 0 && WriteAllToFd(fd, header) && WriteAllToFd(fd, AsChars(blob)) && ::fsync(fd) == 0;
  if (fd >= 0) ok = ::close(fd) == 0 && ok;
  if (!ok || ::rename(tmp.c_str(), path.c_str()) != 0) {
    log::Warn("prefix cache: cannot write ", path.string(), ": ", std::strerror(errno));
    ::unlink(tmp.c_str());
    ++errors_;
    return;
  }
  SyncDirectory(dir_);
  Recount();  // first: whoever sees the write counted sees the file in the gauges too
  ++writes_;
}

bool PrefixDisk::MakeRoom(std::uint64_t need) {
  std::vector<FileInfo> files;
  std::error_code ec;
  for (fs::directory_iterator it(options_.root, ec), end; !ec && it != end; it.increment(ec)) {
    if (!it->is_directory()) continue;
    std::vector<FileInfo> more = ListFiles(it->path());
    files.insert(files.end(), more.begin(), more.end());
  }
  std::uint64_t total = 0;
  for (const FileInfo& f : files) total += f.size;
  struct statvfs st{};
  if (::statvfs(options_.root.c_str(), &st) != 0) return false;
  const std::uint64_t free_bytes = std::uint64_t{st.f_bavail} * st.f_frsize;
  std::uint64_t to_free = 0;
  if (need + options_.min_free_bytes > free_bytes) {
    to_free = need + options_.min_free_bytes - free_bytes;
  }
  if (total + need > options_.max_bytes) {
    to_free = std::max(to_free, total + need - options_.max_bytes);
  }
  if (need > options_.max_bytes || to_free > total) {
    log::Debug("prefix cache: no room on disk for an entry of ", need, " bytes");
    return false;
  }
  std::sort(files.begin(), files.end(),
            [](const FileInfo& a, const FileInfo& b) { return a.mtime < b.mtime; });
  std::uint64_t freed = 0;
  for (const FileInfo& f : files) {
    if (freed >= to_free) break;
    std::error_code rm_ec;
    if (fs::remove(f.path, rm_ec)) freed += f.size;
  }
  return freed >= to_free;
}

void PrefixDisk::Recount() {
  std::uint64_t bytes = 0;
  int entries = 0;
  for (const FileInfo& f : ListFiles(dir_)) {
    bytes += f.size;
    ++entries;
  }
  bytes_ = bytes;
  entries_ = entries;
}

}  // namespace ember::scheduler
