#!/usr/bin/env bash
# The soak test (ctest label `slow`, tests/soak/test_chaos.py): 10,000 mixed requests (normal,
# streamed, cancelled, disconnected, malformed, refused with 429) against the real binary and
# stories260K, then checks that no sequence or KV cell is left, RSS did not grow past its bound
# and started = finished + cancelled + failed. About a minute on 2 cores. Builds like
# scripts/test.sh. Environment: EMBER_SOAK_REQUESTS (default 10000), EMBER_SOAK_CLIENTS (12),
# EMBER_SOAK_SEED (replays a mix; printed at the end of every run). Extra arguments go to ctest.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
"$repo/scripts/setup.sh" release
cd "$repo/build/release"
ctest --output-on-failure --timeout 600 -L slow -V "$@"
