#include "server/cpu_budget.h"

#include <gtest/gtest.h>

#include <thread>

namespace ember::server {
namespace {

TEST(CpuBudget, ParsesCgroupV2Quota) {
  EXPECT_EQ(ParseCgroupV2CpuMax("max 100000\n"), std::nullopt);
  EXPECT_DOUBLE_EQ(ParseCgroupV2CpuMax("150000 100000\n").value(), 1.5);
  EXPECT_DOUBLE_EQ(ParseCgroupV2CpuMax("200000 100000").value(), 2.0);
  EXPECT_EQ(ParseCgroupV2CpuMax(""), std::nullopt);
  EXPECT_EQ(ParseCgroupV2CpuMax("garbage"), std::nullopt);
  EXPECT_EQ(ParseCgroupV2CpuMax("0 100000"), std::nullopt);
}

TEST(CpuBudget, UsableCpusIsPositiveAndWithinTheHost) {
  const int cpus = UsableCpus();
  EXPECT_GE(cpus, 1);
  EXPECT_LE(cpus, static_cast<int>(std::thread::hardware_concurrency()));
}

}  // namespace
}  // namespace ember::server
