#include "engine/synth/synth.h"

#include <fcntl.h>
#include <gguf.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include "common/log.h"
#include "engine/synth/layout.h"
#include "engine/synth/weights.h"

#ifndef EMBER_LLAMA_SOURCE
#define EMBER_LLAMA_SOURCE ""
#endif

namespace ember::synth {
namespace {

struct FileCloser {
  void operator()(std::FILE* file) const { std::fclose(file); }
};
using FilePtr = std::unique_ptr<std::FILE, FileCloser>;

// Where each tensor's data landed in the written file.
struct WrittenFile {
  std::size_t data_offset = 0;
  std::vector<std::size_t> tensor_positions;
  std::size_t end = 0;
};

// Removes the temporary output unless Commit() is called, so failures leave nothing behind.
class TempFile {
 public:
  explicit TempFile(std::string path) : path_(std::move(path)) {}
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;
  ~TempFile() {
    if (!committed_) std::remove(path_.c_str());
  }
  const std::string& path() const { return path_; }
  void Commit() { committed_ = true; }

 private:
  std::string path_;
  bool committed_ = false;
};

std::unexpected<Error> IoError(std::string_view what, const std::string& path) {
  return Unavailable(StrCat(what, " ", path, ": ", std::strerror(errno)));
}

int EncoderThreads() {
  return static_cast<int>(std::clamp(std::thread::hardware_concurrency(), 1u, 2u));
}

Status WriteTensors(const Layout& layout, std::uint64_t seed, std::FILE* file,
                    WrittenFile& written) {
  const std::size_t alignment = gguf_get_alignment(layout.gguf.get());
  TensorWriter writer(file, seed, EncoderThreads());
  for (std::size_t i = 0; i < layout.tensors.size(); ++i) {
    written.tensor_positions.push_back(static_cast<std::size_t>(ftello(file)));
    if (auto ok = writer.Write(layout.tensors[i], i, alignment); !ok) return ok;
  }
  written.end = static_cast<std::size_t>(ftello(file));
  return {};
}

// Writes metadata then tensor data to `path` and fsyncs it.
Result<WrittenFile> WriteModelFile(const std::string& path, const Layout& layout,
                                   std::uint64_t seed) {
  FilePtr file(std::fopen(path.c_str(), "wb"));
  if (!file) return IoError("cannot create", path);
  if (!gguf_write_to_file_ptr(layout.gguf.get(), file.get(), /*only_meta=*/true)) {
    return IoError("cannot write the GGUF header to", path);
  }
  WrittenFile written;
  written.data_offset = static_cast<std::size_t>(ftello(file.get()));
  if (auto ok = WriteTensors(layout, seed, file.get(), written); !ok) {
    return std::unexpected(std::move(ok.error()));
  }
  if (std::fflush(file.get()) != 0 || ::fsync(fileno(file.get())) != 0) {
    return IoError("cannot flush", path);
  }
  if (std::fclose(file.release()) != 0) return IoError("cannot close", path);
  return written;
}

// Re-reads the file's metadata with gguf and checks that every tensor's data sits where
// gguf will look for it.
Status VerifyOffsets(const std::string& path, const Layout& layout, const WrittenFile& written) {
  GgufPtr reread(gguf_init_from_file(path.c_str(), gguf_init_params{true, nullptr}));
  if (!reread) return Internal(StrCat("gguf cannot re-read the file it wrote: ", path));
  const auto n = static_cast<std::int64_t>(layout.tensors.size());
  if (gguf_get_n_tensors(reread.get()) != n ||
      gguf_get_data_offset(reread.get()) != written.data_offset) {
    return Internal(StrCat("GGUF layout mismatch in ", path, ": header"));
  }
  for (std::int64_t i = 0; i < n; ++i) {
    const std::size_t expected =
        gguf_get_data_offset(reread.get()) + gguf_get_tensor_offset(reread.get(), i);
    if (expected != written.tensor_positions[i] ||
        layout.tensors[i].name != gguf_get_tensor_name(reread.get(), i)) {
      return Internal(
          StrCat("GGUF layout mismatch in ", path, ": tensor ", layout.tensors[i].name));
    }
  }
  std::error_code ec;
  if (std::filesystem::file_size(path, ec) != written.end || ec) {
    return Internal(StrCat("GGUF layout mismatch in ", path, ": file size"));
  }
  return {};
}

// Renames `from` over `to`, then fsyncs the directory so the rename itself is durable.
Status CommitFile(TempFile& from, const std::string& to) {
  if (std::rename(from.path().c_str(), to.c_str()) != 0) {
    return IoError(StrCat("cannot rename ", from.path(), " to"), to);
  }
  from.Commit();
  std::filesystem::path dir = std::filesystem::path(to).parent_path();
  if (dir.empty()) dir = ".";
  if (const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY); fd >= 0) {
    ::fsync(fd);  // best effort: the data itself is already on disk
    ::close(fd);
  }
  return {};
}

}  // namespace

Result<Shape> ParseShape(std::string_view text) {
  if (text == "tiny") return Shape::kTiny;
  if (text == "110m") return Shape::k110m;
  if (text == "1b") return Shape::k1b;
  return InvalidArgument(StrCat("unknown shape '", text, "' (expected tiny, 110m or 1b)"), "shape");
}

Result<WeightType> ParseWeightType(std::string_view text) {
  if (text == "f32") return WeightType::kF32;
  if (text == "f16") return WeightType::kF16;
  if (text == "q8_0") return WeightType::kQ8_0;
  if (text == "q4_0") return WeightType::kQ4_0;
  return InvalidArgument(
      StrCat("unknown weight type '", text, "' (expected f32, f16, q8_0 or q4_0)"), "type");
}

std::string_view ShapeName(Shape shape) { return SpecFor(shape).name; }

std::string_view WeightTypeName(WeightType type) {
  switch (type) {
    case WeightType::kF32:
      return "f32";
    case WeightType::kF16:
      return "f16";
    case WeightType::kQ8_0:
      return "q8_0";
    case WeightType::kQ4_0:
      return "q4_0";
  }
  return "f32";
}

std::string DefaultVocabPath(Shape shape) {
  constexpr std::string_view kSource = EMBER_LLAMA_SOURCE;
  if (kSource.empty()) return {};
  return StrCat(kSource, "/models/", SpecFor(shape).vocab_file);
}

Status SynthesizeModel(const SynthOptions& options) {
  if (options.output_path.empty()) return InvalidArgument("no output path given", "output");
  const std::string vocab_path =
      options.vocab_path.empty() ? DefaultVocabPath(options.shape) : options.vocab_path;
  if (vocab_path.empty()) {
    return InvalidArgument(
        "no default vocabulary: ember was built without EMBER_LLAMA_SOURCE; pass a vocab GGUF",
        "vocab");
  }
  const auto start = std::chrono::steady_clock::now();
  auto vocab = ReadVocab(vocab_path);
  if (!vocab) return std::unexpected(std::move(vocab.error()));
  auto layout = BuildLayout(SpecFor(options.shape), options.type, options.seed, **vocab);
  if (!layout) return std::unexpected(std::move(layout.error()));
  vocab->reset();

  TempFile temp(options.output_path + ".tmp");
  auto written = WriteModelFile(temp.path(), *layout, options.seed);
  if (!written) return std::unexpected(std::move(written.error()));
  if (auto ok = VerifyOffsets(temp.path(), *layout, *written); !ok) return ok;
  if (auto ok = CommitFile(temp, options.output_path); !ok) return ok;

  const std::chrono::duration<double> took = std::chrono::steady_clock::now() - start;
  log::Info("synth: wrote ", options.output_path, " (", ShapeName(options.shape), " ",
            WeightTypeName(options.type), ", ", layout->tensors.size(), " tensors, ", written->end,
            " bytes) in ", took.count(), " s");
  return {};
}

}  // namespace ember::synth
