#!/usr/bin/env bash
# Cross-compiles ember for 64-bit ARM Linux (Graviton, Neoverse, Ampere) and runs its unit tests
# under qemu-aarch64 (user-mode emulation, `-cpu max`): the pinned llama.cpp with ggml's ARM CPU
# variants (scripts/llama_cpp.sh with EMBER_TARGET=aarch64, cached like the x86 build),
# GoogleTest built for aarch64 (cached), then ember in build/aarch64. The kernel tests run once
# per ARM variant, as on x86. Without llguidance: Rust's standard library for aarch64 is not
# reachable here (rustup's downloads), so JSON schemas run as GBNF grammars in this build
# (docs/api.md), and without Wasmtime for the same reason: no WebAssembly plugins
# (docs/plugins.md). Extra arguments go to ctest (default: -L unit).
#   scripts/cross_aarch64.sh [ctest args]
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
cache="${EMBER_CACHE_DIR:-$HOME/.cache/ember}"

missing=()
command -v aarch64-linux-gnu-g++ >/dev/null || missing+=(g++-aarch64-linux-gnu)
command -v qemu-aarch64 >/dev/null || missing+=(qemu-user)
for p in libgtest-dev libgmock-dev libboost1.74-dev nlohmann-json3-dev libcli11-dev; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
SUDO=""; [[ $(id -u) -eq 0 ]] || SUDO="sudo"
if ((${#missing[@]})); then
  echo "[cross] installing ${missing[*]}" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

toolchain="$repo/cmake/aarch64-linux-gnu.cmake"
gtest_version="$(dpkg-query -W -f='${Version}' libgtest-dev)"
deps="$cache/aarch64-deps/gtest-$gtest_version-$(aarch64-linux-gnu-g++ -dumpfullversion)"
if [[ ! -f "$deps/.ember-complete" ]]; then
  echo "[cross] building GoogleTest $gtest_version for aarch64 into $deps" >&2
  rm -rf "$deps" "$deps.build"
  cmake -S /usr/src/googletest -B "$deps.build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_TOOLCHAIN_FILE="$toolchain" -DCMAKE_INSTALL_PREFIX="$deps" >/dev/null
  cmake --build "$deps.build" >/dev/null
  cmake --install "$deps.build" >/dev/null
  rm -rf "$deps.build"
  touch "$deps/.ember-complete"
fi
# Refreshed on every run, so a cache from before a header-only package was added gets it too.
mkdir -p "$deps/include"
for h in boost nlohmann CLI; do ln -sfn "/usr/include/$h" "$deps/include/$h"; done
# SQLite for aarch64 (the ledger links it statically): Debian's libsqlite3-dev:arm64, the build
# machine's version, downloaded and unpacked into the cache, never installed: installing it
# pulls in libc6:arm64, whose /lib/aarch64-linux-gnu libc then mixes with the cross
# toolchain's under qemu-aarch64 and hangs every thread start.
sqlite_version="$(dpkg-query -W -f='${Version}' libsqlite3-dev)"
sqlite="$cache/aarch64-deps/sqlite-$sqlite_version"
if [[ ! -f "$sqlite/.ember-complete" ]]; then
  echo "[cross] fetching libsqlite3-dev:arm64 $sqlite_version into $sqlite" >&2
  dpkg --print-foreign-architectures | grep -qx arm64 || $SUDO dpkg --add-architecture arm64
  $SUDO apt-get update -qq
  rm -rf "$sqlite" && mkdir -p "$sqlite/deb"
  (cd "$sqlite/deb" && { apt-get download -qq "libsqlite3-dev:arm64=$sqlite_version" 2>/dev/null ||
                         apt-get download -qq libsqlite3-dev:arm64; })
  dpkg -x "$sqlite"/deb/*.deb "$sqlite/root"
  rm -rf "$sqlite/deb"
  touch "$sqlite/.ember-complete"
fi
ln -sfn "$sqlite/root/usr/include/sqlite3.h" "$deps/include/sqlite3.h"
mkdir -p "$deps/lib"
ln -sfn "$sqlite/root/usr/lib/aarch64-linux-gnu/libsqlite3.a" "$deps/lib/libsqlite3.a"
export EMBER_AARCH64_DEPS="$deps"

prefix="$(EMBER_TARGET=aarch64 "$repo/scripts/llama_cpp.sh" prefix)"
common="$(EMBER_TARGET=aarch64 "$repo/scripts/llama_cpp.sh" common)"
source="$("$repo/scripts/llama_cpp.sh" source)"
build="$repo/build/aarch64"
cmake -S "$repo" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_TOOLCHAIN_FILE="$toolchain" -DEMBER_LLAMA_PREFIX="$prefix" \
  -DEMBER_LLAMA_SOURCE="$source" -DEMBER_LLAMA_COMMON_PREFIX="$common" \
  -DEMBER_LLGUIDANCE_PREFIX="" -DEMBER_WASMTIME_PREFIX="" ${EMBER_CMAKE_ARGS:-} >/dev/null
cmake --build "$build" -j "$(nproc)"
echo "[cross] built $build/src/cli/ember for aarch64; unit tests under qemu-aarch64" >&2
cd "$build"
if (($#)); then ctest --output-on-failure "$@"; else ctest --output-on-failure -L unit; fi
