#!/usr/bin/env bash
# Builds (or finds in the cache) the guest of the power-cut harness (npm run powercut,
# docs/crash-testing.md "Power cuts"). Prints the folder holding the three pieces on stdout:
#
#   vmlinuz, initrd.img   Debian 12's own kernel and initramfs, from the linux-image-amd64 package
#                         installed INTO the guest root by debootstrap (initramfs-tools made the
#                         initramfs there, MODULES=most: virtio_blk, virtio_net, ext4 are in it)
#   root.ext4             the guest's root: debootstrap --variant=minbase bookworm with
#                         linux-image-amd64 and busybox, plus /sbin/powercut-init (below), as an
#                         ext4 image made with mkfs.ext4 -d (no mount, no loop device)
#   project/              the tree of the second disk: the built dist/, the production
#                         node_modules (native modules built for the bundled Node), the Node 24
#                         runtime from scripts/fetch-node.sh, and the guest's init script
#
# The harness copies root.ext4 for every run (the cached image is never booted) and makes the
# project disk from project/ plus the run's seed files (config, trusted root, tokens, the product at
# 1.0.0). Cache: .cache/powercut/, each piece keyed by its inputs: the root by suite, variant, mirror
# and the stub init; the modules by package-lock.json and the Node version; the project by a hash of
# dist/ and the guest script. OTA_POWERCUT_CACHE overrides the folder, OTA_POWERCUT_MIRROR the mirror.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
cache="${OTA_POWERCUT_CACHE:-$root/.cache/powercut}"
mkdir -p "$cache"

for tool in debootstrap mkfs.ext4 sha256sum tar; do
  command -v "$tool" >/dev/null || { echo "powercut-image: $tool is missing (apt-get install debootstrap e2fsprogs)" >&2; exit 1; }
done
[ "$(id -u)" = 0 ] || { echo "powercut-image: debootstrap needs root" >&2; exit 1; }

mirror="${OTA_POWERCUT_MIRROR:-}"
if [ -z "$mirror" ]; then
  mirror="$(sed -n 's/^URIs:[[:space:]]*\(\S*\/debian\)\/\?[[:space:]]*$/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -1)"
  [ -n "$mirror" ] || mirror="$(sed -n 's/^deb[[:space:]]\+\(\[[^]]*\][[:space:]]\+\)\?\(\S*\/debian\)\/\?[[:space:]].*/\2/p' /etc/apt/sources.list 2>/dev/null | head -1)"
  [ -n "$mirror" ] || mirror=http://deb.debian.org/debian
fi

# The stub init on the root disk: mounts the project disk and hands over to the init script there,
# so a change of the guest script never rebuilds the root.
stub='#!/bin/sh
# powercut guest: the project disk (/dev/vdb) carries the real init (scripts/powercut-guest-init.sh)
mkdir -p /opt/otad
mount -o ro /dev/vdb /opt/otad || { echo "powercut-init: cannot mount /dev/vdb"; sleep 5; exit 1; }
exec /opt/otad/init.sh
'
packages=linux-image-amd64,busybox,e2fsprogs
rootkey="$(printf '%s\n' bookworm minbase "$packages" "$mirror" "$stub" | sha256sum | cut -c1-16)"
rootdir="$cache/root-$rootkey"
# debootstrap mounts /proc (and /sys) in the target for its second stage and unmounts them when it
# ends; a process of a package script still holding one (seen on a loaded machine) leaves the mount
# behind, and then mkfs.ext4 -d tries to copy /proc and rm -rf to delete it. Whatever is still
# mounted under the tree is unmounted, deepest first, before either.
unmount_under() {
  local m
  for m in $(awk -v p="$1/" 'index($2, p) == 1 { print $2 }' /proc/self/mounts | sort -r); do
    umount "$m" 2>/dev/null || umount -l "$m"
  done
  if awk -v p="$1/" 'index($2, p) == 1 { found = 1 } END { exit !found }' /proc/self/mounts; then
    echo "powercut-image: cannot unmount what debootstrap left mounted under $1" >&2
    return 1
  fi
}
if [ ! -f "$rootdir/root.ext4" ]; then
  work="$(mktemp -d "$cache/.root.XXXXXX")"
  trap 'unmount_under "$work/tree" || true; rm -rf "$work"' EXIT
  echo "powercut-image: debootstrap bookworm (minbase + $packages) from $mirror: a few minutes, once" >&2
  if ! debootstrap --variant=minbase --include="$packages" bookworm "$work/tree" "$mirror" > "$work/debootstrap.log" 2>&1; then
    tail -30 "$work/debootstrap.log" >&2
    echo "powercut-image: debootstrap failed" >&2
    exit 1
  fi
  unmount_under "$work/tree"
  mkdir -p "$work/out"
  cp "$(readlink -f "$work/tree/vmlinuz")" "$work/out/vmlinuz"
  cp "$(readlink -f "$work/tree/initrd.img")" "$work/out/initrd.img"
  printf '%s' "$stub" > "$work/tree/sbin/powercut-init"
  chmod 0755 "$work/tree/sbin/powercut-init"
  printf 'powercut\n' > "$work/tree/etc/hostname"
  printf '/dev/vda / ext4 defaults 0 1\n' > "$work/tree/etc/fstab"
  # Nothing of apt's download cache is needed in the guest.
  rm -rf "$work/tree/var/cache/apt/archives/"*.deb "$work/tree/var/lib/apt/lists/"*
  dpkg-query --admindir="$work/tree/var/lib/dpkg" -W -f '${Package} ${Version}\n' linux-image-amd64 'linux-image-6*' > "$work/out/kernel-package" 2>/dev/null || true
  # 2 GiB sparse: the root is ~500 MiB, the rest is room for releases, backups and staging.
  mkfs.ext4 -q -F -L powercut-root -d "$work/tree" "$work/out/root.ext4" 2G >&2
  rm -rf "$rootdir"
  mv "$work/out" "$rootdir"
  rm -rf "$work"
  trap - EXIT
fi

# The Node runtime otad ships, and the production dependencies built against it.
runtime="$(scripts/fetch-node.sh x64)"
nodever="$("$runtime/bin/node" --version)"
modkey="$(cat package-lock.json <(echo "$nodever") | sha256sum | cut -c1-16)"
moddir="$cache/modules-$modkey"
if [ ! -d "$moddir/node_modules/better-sqlite3/build/Release" ]; then
  echo "powercut-image: production node_modules for Node $nodever (better-sqlite3 built from source: a few minutes, once)" >&2
  rm -rf "$moddir.part"
  mkdir -p "$moddir.part"
  cp package.json package-lock.json "$moddir.part/"
  (
    cd "$moddir.part"
    export npm_config_nodedir="$runtime" npm_config_build_from_source=true npm_config_jobs=max LDFLAGS="-Wl,--no-as-needed -lc"
    npm ci --omit=dev --no-audit --no-fund --loglevel=error >&2
  )
  [ -f "$moddir.part/node_modules/better-sqlite3/build/Release/better_sqlite3.node" ] || { echo "powercut-image: better-sqlite3 was not built" >&2; exit 1; }
  rm -rf "$moddir.part/node_modules/better-sqlite3/deps" "$moddir.part/node_modules/better-sqlite3/build/Release/obj" "$moddir.part/node_modules/better-sqlite3/build/Release/obj.target"
  rm -rf "$moddir"
  mv "$moddir.part" "$moddir"
fi

[ -f dist/src/cli/otad.js ] && [ -f dist/src/bench/powercut-guest.js ] || { echo "powercut-image: dist/ is not built: run npm run build" >&2; exit 1; }
projkey="$( (cd dist && find . -type f -print0 | sort -z | xargs -0 sha256sum) | cat - scripts/powercut-guest-init.sh <(echo "$modkey $nodever") | sha256sum | cut -c1-16)"
projdir="$cache/project-$projkey"
if [ ! -f "$projdir/.complete" ]; then
  rm -rf "$projdir"
  mkdir -p "$projdir/app" "$projdir/node/bin"
  cp -a dist "$projdir/app/dist"
  cp -a config "$projdir/app/config" 2>/dev/null || true
  cp package.json "$projdir/app/"
  cp -al "$moddir/node_modules" "$projdir/app/node_modules"
  cp "$runtime/bin/node" "$projdir/node/bin/node"
  install -m 0755 scripts/powercut-guest-init.sh "$projdir/init.sh"
  touch "$projdir/.complete"
  # Older project trees of this cache are of no further use.
  for old in "$cache"/project-*; do [ "$old" = "$projdir" ] || rm -rf "$old"; done
fi

mkdir -p "$cache/current"
ln -sfn "$rootdir/vmlinuz" "$cache/current/vmlinuz"
ln -sfn "$rootdir/initrd.img" "$cache/current/initrd.img"
ln -sfn "$rootdir/root.ext4" "$cache/current/root.ext4"
ln -sfn "$projdir" "$cache/current/project"
echo "$cache/current"
