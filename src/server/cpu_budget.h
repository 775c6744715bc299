// How many CPUs this process may actually use: the smaller of its affinity mask and its
// cgroup CPU quota (v2 cpu.max, v1 cfs_quota/cfs_period), rounded up, at least 1.
#pragma once

#include <optional>
#include <string_view>

namespace ember::server {

int UsableCpus();
// Parses cgroup v2 "cpu.max" content ("max 100000" or "150000 100000"); nullopt = no limit.
std::optional<double> ParseCgroupV2CpuMax(std::string_view content);

}  // namespace ember::server
