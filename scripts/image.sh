#!/usr/bin/env bash
# Builds ember's container image with podman, no registry needed:
#   1. a Debian 12 (bookworm) minbase root filesystem made by debootstrap from Debian's mirror,
#      with the libraries ember links beyond its install, imported as
#      localhost/ember-base:bookworm-<hash of that list> (cached: built once per machine);
#   2. ember built (scripts/setup.sh release; or the build in EMBER_BUILD_DIR as it is, which
#      the tests pass) and installed relocatably into a staging folder;
#   3. deploy/image/Containerfile on top: the install, a non-root user, labels, healthcheck.
# Prints the image name on its last line. EMBER_IMAGE names it (default localhost/ember:VERSION);
# EMBER_DEBIAN_MIRROR moves the mirror. Needs root (debootstrap) and podman.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
cache="${EMBER_CACHE_DIR:-$HOME/.cache/ember}/image"
mirror="${EMBER_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
# What ember links that is not in its install or in minbase (ldd build/release/src/cli/ember).
packages=libsqlite3-0
base="localhost/ember-base:bookworm-$(echo "$packages" | sha256sum | cut -c1-8)"

need=()
command -v podman >/dev/null || need+=(podman)
command -v debootstrap >/dev/null || need+=(debootstrap)
# runc beside podman's default crun: where cgroups are mounted in hybrid mode (this project's
# CI machines) crun refuses to start containers and the tests select runc (tests/deploy_image).
command -v runc >/dev/null || [[ -x /usr/sbin/runc ]] || need+=(runc)
if ((${#need[@]})); then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

mkdir -p "$cache"
if ! podman image exists "$base"; then
  rootfs="$cache/rootfs-${base##*:}"
  if [[ ! -f "$rootfs/.complete" ]]; then
    rm -rf "$rootfs.tmp"
    debootstrap --variant=minbase --include="$packages" bookworm "$rootfs.tmp" "$mirror" >&2
    # What a server never runs: package caches and lists, documentation, locales.
    rm -rf "$rootfs.tmp"/var/cache/apt/* "$rootfs.tmp"/var/lib/apt/lists/* \
      "$rootfs.tmp"/usr/share/{doc,man,info,locale}/*
    touch "$rootfs.tmp/.complete"
    mv "$rootfs.tmp" "$rootfs"
  fi
  tar -C "$rootfs" --exclude=./.complete -c . | podman import - "$base" >&2
fi

if [[ -n "${EMBER_BUILD_DIR:-}" ]]; then
  build="$EMBER_BUILD_DIR"
else
  "$repo/scripts/setup.sh" release >&2
  build="$repo/build/release"
fi
version="$("$build/src/cli/ember" --version | head -n1 | awk '{print $2}')"
llama_commit="$(sed -n 's/.*commit `\([0-9a-f]*\)`.*/\1/p' "$repo/README.md" | head -n1)"
image="${EMBER_IMAGE:-localhost/ember:$version}"

stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
cmake --install "$build" --prefix "$stage/opt/ember" >/dev/null
mkdir -p "$stage/etc" "$stage/data"
podman run --rm "$base" cat /etc/passwd >"$stage/etc/passwd"
podman run --rm "$base" cat /etc/group >"$stage/etc/group"
echo "ember:x:10001:10001:ember:/data:/usr/sbin/nologin" >>"$stage/etc/passwd"
echo "ember:x:10001:" >>"$stage/etc/group"
podman build --format docker --file "$repo/deploy/image/Containerfile" \
  --build-arg "BASE=$base" --build-arg "VERSION=$version" \
  --build-arg "LLAMA_CPP_COMMIT=$llama_commit" --tag "$image" "$stage" >&2
echo "$image"
