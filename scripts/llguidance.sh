#!/usr/bin/env bash
# Builds llguidance (guidance-ai's structured-output engine, Rust, with a C API) from its crate
# on crates.io into a cache directory keyed by its version, the Rust compiler and the features,
# and prints the install prefix (lib/libllguidance.a, include/llguidance.h). ember links it into
# its libllama engine (src/engine/llama/llguidance_sampler.cc) to enforce JSON schemas; without
# it (a target with no Rust standard library here, such as the aarch64 cross build) JSON schemas
# are enforced by llama.cpp's GBNF grammars instead (docs/api.md, "Structured output").
#
#   scripts/llguidance.sh prefix   -> builds (if needed) and prints the install prefix
#
# The crate's own Cargo.lock pins every dependency (--locked). No rayon: ember's engine thread
# computes a mask itself, with no thread pool of llguidance's beside ggml's.
# Environment: EMBER_CACHE_DIR (default ~/.cache/ember), CARGO_HOME (default ~/.cargo).
set -euo pipefail

readonly VERSION="1.9.1"
readonly FEATURES="lark,referencing,ahash"
readonly CACHE="${EMBER_CACHE_DIR:-$HOME/.cache/ember}"
readonly CARGO_DIR="${CARGO_HOME:-$HOME/.cargo}"

log() { echo "[llguidance] $*" >&2; }

[[ "${1:-}" == prefix ]] || { echo "usage: $0 prefix" >&2; exit 2; }
[[ -x "$CARGO_DIR/bin/cargo" ]] && export PATH="$CARGO_DIR/bin:$PATH"
command -v cargo >/dev/null || { log "cargo is not installed (rustup installs it)"; exit 1; }

key="$(printf '%s\n' "$VERSION" "$FEATURES" "$(rustc --version)" | sha256sum | cut -c1-12)"
prefix="$CACHE/llguidance/$VERSION-$key"
if [[ -f "$prefix/.ember-complete" ]]; then
  echo "$prefix"
  exit 0
fi

work="$(mktemp -d "$CACHE/llguidance-build.XXXXXX" 2>/dev/null || { mkdir -p "$CACHE"; mktemp -d "$CACHE/llguidance-build.XXXXXX"; })"
trap 'rm -rf "$work"' EXIT
log "fetching llguidance $VERSION from crates.io"
# A throwaway package that depends on the exact version makes cargo download the crate into
# its registry cache; the crate itself (with its Cargo.lock) is then built where it unpacks.
mkdir -p "$work/fetch/src"
cat >"$work/fetch/Cargo.toml" <<EOF
[package]
name = "ember-llguidance-fetch"
version = "0.0.0"
edition = "2021"
[dependencies]
llguidance = { version = "=$VERSION", default-features = false }
EOF
touch "$work/fetch/src/lib.rs"
(cd "$work/fetch" && cargo fetch -q)
crate="$(ls "$CARGO_DIR"/registry/cache/*/llguidance-"$VERSION".crate | head -1)"
tar xzf "$crate" -C "$work"
log "building (cargo build --release, features $FEATURES)"
(cd "$work/llguidance-$VERSION" &&
  cargo build -q --release --locked --no-default-features --features "$FEATURES" --lib)
staging="$prefix.tmp.$$"
rm -rf "$staging"
mkdir -p "$staging/lib" "$staging/include"
cp "$work/llguidance-$VERSION/target/release/libllguidance.a" "$staging/lib/"
cp "$work/llguidance-$VERSION/llguidance.h" "$work/llguidance-$VERSION/LICENSE" "$staging/include/"
touch "$staging/.ember-complete"
rm -rf "$prefix"
mv "$staging" "$prefix"
log "built $prefix"
echo "$prefix"
