#!/usr/bin/env bash
# Builds everything (scripts/setup.sh) and runs every test but those labelled `slow`:
# unit tests, integration tests against the real binary over HTTP, e2e tests with the real
# model. Extra arguments go to ctest (e.g. -L unit).
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
"$repo/scripts/setup.sh" release
# The browser test's Chromium (Debian's) and the console page it drives.
"$repo/scripts/console.sh" --browser >/dev/null
cd "$repo/build/release"
ctest --output-on-failure --timeout 600 -LE slow "$@"
