// Parses byte sizes given on the command line or in EMBER_* variables: "2GiB", "512MiB",
// "1.5G", "4096", "0". Binary suffixes KiB/MiB/GiB/TiB (also K/M/G/T and KB/MB/GB/TB, read as
// binary: memory is sized in powers of two) and a bare number of bytes.
#pragma once

#include <cstdint>
#include <string_view>

#include "common/error.h"

namespace ember::cli {

[[nodiscard]] Result<std::uint64_t> ParseByteSize(std::string_view text);

}  // namespace ember::cli
