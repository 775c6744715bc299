#!/usr/bin/env bash
# Builds Wasmtime's C API (the wasmtime-c-api-impl crate from crates.io, Rust) as a static
# library into a cache directory keyed by its version, the features, this script and the Rust
# compiler, and prints the install prefix (lib/libwasmtime.a, include/wasm.h, include/wasmtime.h,
# include/wasmtime/*.h with a conf.h that matches the features). ember links it into src/plugins/
# (the only module that includes its headers) to run proxy-wasm plugins (docs/plugins.md);
# without it (no cargo, or a target with no Rust standard library here, such as the aarch64
# cross build) ember builds without plugins and refuses a --plugins file.
#
#   scripts/wasmtime.sh prefix   -> builds (if needed) and prints the install prefix
#
# Only the features ember uses, to keep the build short: cranelift (the compiler), wat (tests
# write bad plugins as text), pooling-allocator (instances in microseconds), disable-logging.
# No wasi (plugins get no filesystem, clock or network but through proxy-wasm hostcalls), no
# parallel-compilation (no rayon pool beside ggml's), no cache, no component model.
# The crate's own Cargo.lock pins every dependency (--locked); `cargo rustc --crate-type
# staticlib` builds the crate itself as a static library, so no wrapper crate (and no second,
# unpinned lockfile) is needed. The crate's build.rs generates wasmtime/conf.h for exactly the
# features passed; it runs cmake, which ember needs anyway.
# Environment: EMBER_CACHE_DIR (default ~/.cache/ember), CARGO_HOME (default ~/.cargo),
# CARGO_BUILD_JOBS (cargo's parallelism; default all cores).
set -euo pipefail

# 48.x is the newest line whose rust-version (1.95) the toolchain here builds; 50.x needs 1.97.
readonly VERSION="48.0.8"
readonly FEATURES="cranelift,wat,pooling-allocator,disable-logging"
readonly CACHE="${EMBER_CACHE_DIR:-$HOME/.cache/ember}"
readonly CARGO_DIR="${CARGO_HOME:-$HOME/.cargo}"

log() { echo "[wasmtime] $*" >&2; }

[[ "${1:-}" == prefix ]] || { echo "usage: $0 prefix" >&2; exit 2; }
[[ -x "$CARGO_DIR/bin/cargo" ]] && export PATH="$CARGO_DIR/bin:$PATH"
command -v cargo >/dev/null || { log "cargo is not installed (rustup installs it)"; exit 1; }

key="$(printf '%s\n' "$VERSION" "$FEATURES" "$(rustc --version)" "$(sha256sum <"$0")" |
  sha256sum | cut -c1-12)"
prefix="$CACHE/wasmtime/$VERSION-$key"
if [[ -f "$prefix/.ember-complete" ]]; then
  echo "$prefix"
  exit 0
fi

mkdir -p "$CACHE"
work="$(mktemp -d "$CACHE/wasmtime-build.XXXXXX")"
trap 'rm -rf "$work"' EXIT
log "fetching wasmtime-c-api-impl $VERSION from crates.io"
# A throwaway package that depends on the exact version makes cargo download the crate into
# its registry cache; the crate itself (with its Cargo.lock) is then built where it unpacks.
mkdir -p "$work/fetch/src"
cat >"$work/fetch/Cargo.toml" <<EOF
[package]
name = "ember-wasmtime-fetch"
version = "0.0.0"
edition = "2021"
[dependencies]
wasmtime-c-api-impl = { version = "=$VERSION", default-features = false }
EOF
touch "$work/fetch/src/lib.rs"
(cd "$work/fetch" && cargo fetch -q)
crate="$(ls "$CARGO_DIR"/registry/cache/*/wasmtime-c-api-impl-"$VERSION".crate | head -1)"
tar xzf "$crate" -C "$work"
src="$work/wasmtime-c-api-impl-$VERSION"
log "building (cargo rustc --release --crate-type staticlib, features $FEATURES)"
start=$SECONDS
(cd "$src" &&
  cargo rustc -q --release --locked --no-default-features --features "$FEATURES" --lib \
    --crate-type staticlib)
log "cargo build took $((SECONDS - start)) s"
conf="$(ls "$src"/target/release/build/wasmtime-c-api-impl-*/out/include/wasmtime/conf.h | head -1)"
staging="$prefix.tmp.$$"
rm -rf "$staging"
mkdir -p "$staging/lib"
cp "$src/target/release/libwasmtime_c_api.a" "$staging/lib/libwasmtime.a"
cp -r "$(dirname "$(dirname "$conf")")" "$staging/include"
cp "$src/README.md" "$staging/include/WASMTIME-README.md"
touch "$staging/.ember-complete"
rm -rf "$prefix"
mv "$staging" "$prefix"
log "built $prefix"
echo "$prefix"
