#include "server/cpu_budget.h"

#include <sched.h>

#include <cmath>
#include <fstream>
#include <sstream>
#include <string>

namespace ember::server {
namespace {

std::optional<std::string> ReadFile(const char* path) {
  std::ifstream in(path);
  if (!in) return std::nullopt;
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::optional<double> CgroupQuota() {
  if (auto v2 = ReadFile("/sys/fs/cgroup/cpu.max")) return ParseCgroupV2CpuMax(*v2);
  auto quota = ReadFile("/sys/fs/cgroup/cpu/cpu.cfs_quota_us");
  auto period = ReadFile("/sys/fs/cgroup/cpu/cpu.cfs_period_us");
  if (!quota || !period) return std::nullopt;
  const double q = std::strtod(quota->c_str(), nullptr);
  const double p = std::strtod(period->c_str(), nullptr);
  if (q <= 0 || p <= 0) return std::nullopt;
  return q / p;
}

}  // namespace

std::optional<double> ParseCgroupV2CpuMax(std::string_view content) {
  std::istringstream in{std::string(content)};
  std::string quota;
  double period = 0;
  if (!(in >> quota >> period) || quota == "max" || period <= 0) return std::nullopt;
  char* end = nullptr;
  const double q = std::strtod(quota.c_str(), &end);
  if (end == quota.c_str() || q <= 0) return std::nullopt;
  return q / period;
}

int UsableCpus() {
  int cpus = 1;
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) == 0) cpus = CPU_COUNT(&set);
  if (auto quota = CgroupQuota()) {
    cpus = std::min(cpus, static_cast<int>(std::ceil(*quota)));
  }
  return std::max(1, cpus);
}

}  // namespace ember::server
