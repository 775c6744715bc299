"""Runs a directory of Python tests with the server forced to one CPU variant of ggml.

    python3 tests/variant_suite.py VARIANT SUITE_DIR

ctest registers suites this way once per variant built (tests/CMakeLists.txt). When this CPU
cannot run VARIANT (`ember --version` lists what it runs), it prints why and exits 77, which
ctest reports as skipped; otherwise it runs the suite with EMBER_CPU_VARIANT=VARIANT, which
every `ember serve` the tests start inherits."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import runnable_variants  # noqa: E402

SKIPPED = 77


def main():
    variant, suite = sys.argv[1], sys.argv[2]
    runs, cpu = runnable_variants()
    if variant not in runs:
        print(f"[  SKIPPED ] this CPU ({cpu}) cannot run the CPU variant {variant}")
        return SKIPPED
    os.environ["EMBER_CPU_VARIANT"] = variant
    tests = os.path.dirname(os.path.abspath(__file__))
    os.execv(sys.executable, [sys.executable, "-m", "unittest", "discover", "-v", "-s",
                              os.path.join(tests, suite), "-t", tests])


if __name__ == "__main__":
    sys.exit(main())
