#!/usr/bin/env bash
# Builds ember's web console (console/: TypeScript + Vite, docs/console.md) and prints the
# folder of built assets to pass to `ember serve --console-dir`. The npm packages (vite,
# typescript, playwright-core, at the exact versions of console/package-lock.json) go into a
# cache outside the clone keyed by the lockfile, and the build into one keyed by every source
# file, so a fresh clone installs and builds nothing twice; console/node_modules links to the
# packages (Node resolves imports from the script's own folder).
#   scripts/console.sh            # build (or reuse) and print the assets folder
#   scripts/console.sh --browser  # also make sure Debian's chromium is installed (the tests)
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
src="$repo/console"
cache_root="${EMBER_CACHE_DIR:-$HOME/.cache/ember}/console"

if [[ "${1:-}" == "--browser" && ! -x /usr/bin/chromium ]]; then
  echo "[console] installing Debian's chromium for the browser tests" >&2
  apt-get install -y --no-install-recommends chromium >&2 ||
    { apt-get update >&2 && apt-get install -y --no-install-recommends chromium >&2; }
fi

deps_key="$(sha256sum "$src/package-lock.json" | cut -c1-12)"
deps="$cache_root/deps-$deps_key"
if [[ ! -f "$deps/.complete" ]]; then
  mkdir -p "$cache_root"
  tmp="$(mktemp -d "$cache_root/.install.XXXXXX")"
  trap 'rm -rf "$tmp"' EXIT
  echo "[console] installing the console's npm packages into $deps" >&2
  cp "$src/package.json" "$src/package-lock.json" "$tmp/"
  (cd "$tmp" && npm ci --no-audit --no-fund --loglevel=error >&2)
  touch "$tmp/.complete"
  mv -T "$tmp" "$deps" 2>/dev/null && trap - EXIT
fi
ln -sfn "$deps/node_modules" "$src/node_modules"

build_key="$(cd "$src" && cat package-lock.json index.html tsconfig.json vite.config.ts \
  $(find src public -type f | sort) | sha256sum | cut -c1-12)"
out="$cache_root/build-$build_key"
if [[ ! -f "$out/index.html" ]]; then
  echo "[console] building the console into $out" >&2
  tmp="$(mktemp -d "$cache_root/.build.XXXXXX")"
  (cd "$src" && EMBER_CONSOLE_OUT="$tmp" npm run --silent build >&2)
  mv -T "$tmp" "$out" 2>/dev/null || rm -rf "$tmp"
fi
echo "$out"
