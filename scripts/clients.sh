#!/usr/bin/env bash
# Installs the official client libraries the client tests drive ember with (tests/clients/):
# the `openai` and Vercel AI SDK (`ai`, `@ai-sdk/openai`) npm packages and the `openai` Python
# package, at the exact versions of tests/clients/package-lock.json and requirements.txt.
# They go into a cache outside the clone, keyed by those two files, so a fresh clone installs
# nothing twice; prints the cache directory (node_modules/ and venv/ inside it) and links
# tests/clients/node_modules to it, since Node resolves a script's imports from its own folder.
#   scripts/clients.sh
# Node.js 20 (Debian 12's machines) limits the npm majors: openai 7, ai 7 and @ai-sdk/openai 4
# need Node 22, so the newest releases that run on 20 are pinned (docs/api.md, "Clients").
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
clients="$repo/tests/clients"
cache_root="${EMBER_CACHE_DIR:-$HOME/.cache/ember}/clients"
key="$(cat "$clients/package-lock.json" "$clients/requirements.txt" | sha256sum | cut -c1-12)"
dir="$cache_root/$key"

if [[ ! -f "$dir/.complete" ]]; then
  mkdir -p "$cache_root"
  tmp="$(mktemp -d "$cache_root/.install.XXXXXX")"
  trap 'rm -rf "$tmp"' EXIT
  echo "[clients] installing the client libraries into $dir" >&2
  cp "$clients/package.json" "$clients/package-lock.json" "$tmp/"
  (cd "$tmp" && npm ci --no-audit --no-fund --loglevel=error >&2)
  python3 -m venv "$tmp/venv"
  "$tmp/venv/bin/pip" install --quiet --disable-pip-version-check --no-deps \
    -r "$clients/requirements.txt" >&2
  touch "$tmp/.complete"
  # Moved into place whole, so a half-done install is never used; of two installs racing the
  # first rename wins. The venv is used only as venv/bin/python, which finds its packages
  # from where it lies (its pip's shebang would still name the temporary path).
  mv -T "$tmp" "$dir" 2>/dev/null && trap - EXIT
fi
ln -sfn "$dir/node_modules" "$clients/node_modules"
echo "$dir"
