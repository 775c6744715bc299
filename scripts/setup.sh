#!/usr/bin/env bash
# Installs everything ember needs on a fresh Debian 12 machine and builds it:
# Debian packages (when missing), the pinned llama.cpp (cached outside the clone, see
# scripts/llama_cpp.sh), llguidance (scripts/llguidance.sh, cached likewise), Wasmtime's C API
# (scripts/wasmtime.sh, cached likewise), the AssemblyScript compiler and proxy-wasm SDK
# (scripts/assemblyscript.sh, cached likewise) and ember itself
# (CMake preset, default "release").
#   scripts/setup.sh [preset]
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
preset="${1:-release}"

# Tools count as present when their command is on PATH (node/npm may come from elsewhere);
# libraries when their Debian package is installed.
# clang-19 and libclang-rt-19-dev (libFuzzer) are for scripts/fuzz.sh only; clang-format-19 is
# the format check (ctest "format"); readelf (binutils) reads the install's RPATH in a test.
# wasm-ld-19 (lld-19), wasi-libc and libclang-rt-19-dev-wasm32 build the example plugins written
# in C for wasm32-wasi (src/plugins/examples, docs/plugins.md).
declare -A tools=([g++]=g++ [cmake]=cmake [ninja]=ninja-build [git]=git [npm]=npm
                  [python3]=python3 [curl]=curl [clang++-19]=clang-19
                  [clang-format-19]=clang-format-19 [readelf]=binutils [wasm-ld-19]=lld-19)
libraries=(libboost1.74-dev libsqlite3-dev sqlite3 nlohmann-json3-dev libcli11-dev libgtest-dev libgmock-dev
           libbenchmark-dev libclang-rt-19-dev wasi-libc libclang-rt-19-dev-wasm32)
missing=()
for cmd in "${!tools[@]}"; do command -v "$cmd" >/dev/null || missing+=("${tools[$cmd]}"); done
for p in "${libraries[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "[setup] installing ${missing[*]}" >&2
  SUDO=""; [[ $(id -u) -eq 0 ]] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

export EMBER_LLAMA_PREFIX="$("$repo/scripts/llama_cpp.sh" prefix)"
export EMBER_LLAMA_SOURCE="$("$repo/scripts/llama_cpp.sh" source)"
export EMBER_LLAMA_COMMON_PREFIX="$("$repo/scripts/llama_cpp.sh" common)"
# llguidance (JSON schemas; docs/api.md) needs Rust >= 1.87 with cargo, which rustup installs and
# this machine kind has; without it, JSON schemas run as GBNF grammars, and the build says so.
if ! EMBER_LLGUIDANCE_PREFIX="$("$repo/scripts/llguidance.sh" prefix)"; then
  echo "[setup] WARNING: llguidance could not be built (see above): JSON schemas will be" \
       "enforced by llama.cpp's GBNF grammars, ~100x slower per mask" >&2
  EMBER_LLGUIDANCE_PREFIX=""
fi
export EMBER_LLGUIDANCE_PREFIX
# Wasmtime (WebAssembly plugins; docs/plugins.md) needs the same Rust toolchain (>= 1.95).
if ! EMBER_WASMTIME_PREFIX="$("$repo/scripts/wasmtime.sh" prefix)"; then
  echo "[setup] WARNING: Wasmtime could not be built (see above): ember is built WITHOUT" \
       "WebAssembly plugins (docs/plugins.md)" >&2
  EMBER_WASMTIME_PREFIX=""
fi
export EMBER_WASMTIME_PREFIX
# The AssemblyScript compiler and proxy-wasm SDK (npm) build the example plugin written with an
# SDK (docs/plugins.md); without them ember is built without that one example.
if ! EMBER_ASSEMBLYSCRIPT_PREFIX="$("$repo/scripts/assemblyscript.sh" prefix)"; then
  echo "[setup] WARNING: the AssemblyScript SDK could not be installed (see above): the" \
       "example plugin written with it is not built (docs/plugins.md)" >&2
  EMBER_ASSEMBLYSCRIPT_PREFIX=""
fi
export EMBER_ASSEMBLYSCRIPT_PREFIX
cmake --preset "$preset" -S "$repo" -DEMBER_LLAMA_PREFIX="$EMBER_LLAMA_PREFIX" \
  -DEMBER_LLAMA_SOURCE="$EMBER_LLAMA_SOURCE" \
  -DEMBER_LLAMA_COMMON_PREFIX="$EMBER_LLAMA_COMMON_PREFIX" \
  -DEMBER_LLGUIDANCE_PREFIX="$EMBER_LLGUIDANCE_PREFIX" \
  -DEMBER_WASMTIME_PREFIX="$EMBER_WASMTIME_PREFIX" \
  -DEMBER_ASSEMBLYSCRIPT_PREFIX="$EMBER_ASSEMBLYSCRIPT_PREFIX" ${EMBER_CMAKE_ARGS:-} >/dev/null
cmake --build "$repo/build/$preset" -j "$(nproc)"
echo "[setup] built $repo/build/$preset/src/cli/ember" >&2
