#!/usr/bin/env bash
# npm run package:deb: builds dist-deb/otad_<version>_amd64.deb and dist-deb/otad_<version>_arm64.deb.
#
#   scripts/package-deb.sh [amd64] [arm64]        (no argument: both)
#
# Why a shell script with dpkg-deb, not debhelper or a Node program: the package is assembled from
# files the repository already has (the npm build, the runtime scripts/fetch-node.sh fetches,
# deploy/), and every step is a call to an existing tool (npm, node-gyp, the cross compiler, strip,
# gzip, dpkg-deb, lintian); a shell script says those calls plainly, runs from a clean clone with
# nothing but Debian's dpkg-dev and the cross toolchain, and needs no debian/ source package. What
# debhelper would generate (the systemd handling of the maintainer scripts, the conffiles list) is
# written out in deploy/deb/.
#
# Per architecture: the production dependencies (npm ci --omit=dev) are installed into a staging
# folder with node-gyp pointed at the bundled runtime's headers (npm_config_nodedir), so
# better-sqlite3 and sd-notify are built for Node 24 offline, and for arm64 with Debian's
# aarch64-linux-gnu cross compiler against the arm64 libsystemd headers (multiarch
# libsystemd-dev:arm64). Each native module is checked to be an ELF of the target machine. Where
# libsystemd-dev for the target is missing, sd-notify is left out (npm skips a failed optional
# dependency) and the script says so: otad runs without it, and only a start under systemd's
# Type=notify logs an error naming the fix (src/daemon/sd-notify.ts).
#
# Environment: OTA_DEB_OUT (default dist-deb), OTA_DEB_LINTIAN=0 skips lintian.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
out="${OTA_DEB_OUT:-$root/dist-deb}"
archs=("$@")
[ ${#archs[@]} -gt 0 ] || archs=(amd64 arm64)

for tool in dpkg-deb gzip file readelf; do
  command -v "$tool" >/dev/null || { echo "package-deb: $tool is missing (apt-get install dpkg-dev file binutils)" >&2; exit 1; }
done

upstream="$(node -p 'require("./package.json").version')"
# The Debian version is the changelog's first entry; its upstream part must be package.json's.
debver="$(sed -n '1s/^otad (\([^)]*\)).*/\1/p' deploy/deb/changelog)"
[ "${debver%-*}" = "$upstream" ] || { echo "package-deb: deploy/deb/changelog is at $debver, package.json at $upstream: add a changelog entry" >&2; exit 1; }
grep -q "OTAD_VERSION = '$upstream'" src/core/version.ts || { echo "package-deb: src/core/version.ts does not say $upstream" >&2; exit 1; }

# The app: compiled from this checkout (devDependencies are needed to build, not shipped).
[ -d node_modules ] || npm ci --no-audit --no-fund
npm run build --silent

mkdir -p "$out"
work="$root/.cache/deb-build"

build_one() {
  local arch="$1" nodearch cross="" machine
  case "$arch" in
    amd64) nodearch=x64; machine="X86-64" ;;
    arm64) nodearch=arm64; machine="AArch64"; cross=aarch64-linux-gnu- ;;
    *) echo "package-deb: architecture must be amd64 or arm64, not $arch" >&2; exit 2 ;;
  esac
  local runtime
  runtime="$(scripts/fetch-node.sh "$nodearch")"
  local stage="$work/$arch" pkg="$work/$arch/pkg" app="$work/$arch/app"
  rm -rf "$stage"
  mkdir -p "$app" "$pkg"

  # 1. Production dependencies, native modules built for the bundled Node (and target machine).
  cp package.json package-lock.json "$app/"
  (
    cd "$app"
    export npm_config_nodedir="$runtime" npm_config_build_from_source=true npm_config_jobs=max LDFLAGS="-Wl,--no-as-needed -lc"
    if [ -n "$cross" ]; then
      command -v "${cross}g++" >/dev/null || { echo "package-deb: ${cross}g++ is missing (apt-get install g++-aarch64-linux-gnu)" >&2; exit 1; }
      export CC="${cross}gcc" CXX="${cross}g++" LINK="${cross}g++" AR="${cross}ar" npm_config_arch="$nodearch" npm_config_target_arch="$nodearch"
    fi
    npm ci --omit=dev --no-audit --no-fund --loglevel=error
  )
  local sqlite="$app/node_modules/better-sqlite3/build/Release/better_sqlite3.node"
  [ -f "$sqlite" ] || { echo "package-deb: better-sqlite3 was not built for $arch" >&2; exit 1; }
  local sdnotify="$app/node_modules/sd-notify/build/Release/notify.node"
  if [ ! -f "$sdnotify" ]; then
    echo "package-deb: $arch ships WITHOUT sd-notify (no libsystemd-dev for $arch here): otad runs, but under systemd's Type=notify it cannot report readiness; install libsystemd-dev${cross:+:$arch} and rebuild" >&2
    rm -rf "$app/node_modules/sd-notify"
  fi
  # Build leftovers are not shipped: only each native module's .node file stays of its build/.
  local mod
  for mod in "$app"/node_modules/*/binding.gyp; do
    mod="$(dirname "$mod")"
    [ -d "$mod/build/Release" ] || continue
    find "$mod/build" -mindepth 1 -maxdepth 1 ! -name Release -exec rm -rf {} +
    find "$mod/build/Release" -mindepth 1 ! -name '*.node' -exec rm -rf {} +
    rm -f "$mod/build/Release/test_extension.node"
    rm -rf "$mod/deps" "$mod/src" "$mod/binding.gyp" "$mod"/*.cc
  done
  rm -rf "$app/node_modules/.bin"
  local so
  for so in "$app"/node_modules/*/build/Release/*.node; do
    readelf -h "$so" | grep -q "Machine:.*$machine" || { echo "package-deb: $so is not a $machine ELF: $(file -b "$so")" >&2; exit 1; }
    echo "package-deb: $arch ${so#"$app/node_modules/"}: $(file -b "$so" | cut -d, -f1-2)"
  done
  # Prebuilt addons of the bare-* modules are for the Bare runtime (tar-stream loads bare-fs only
  # under Bare), for a dozen platforms: never loaded by Node. Repository and linter files go too.
  rm -rf "$app"/node_modules/bare-*/prebuilds
  find "$app/node_modules" \( -name '.github' -o -name '*.map' -o -name '.npmignore' -o -name '.eslintrc*' -o -name 'eslint.config.*' -o -name '.gitattributes' -o -name '.gitignore' -o -name '.travis.yml' -o -name '__pycache__' -o -name '*.pyc' \) -prune -exec rm -rf {} +

  # 2. The file system of the package.
  local lib="$pkg/usr/lib/otad" doc="$pkg/usr/share/doc/otad"
  mkdir -p "$lib/node/bin" "$pkg/usr/bin" "$doc/examples" "$pkg/usr/lib/systemd/system" "$pkg/usr/share/dbus-1/system.d" \
    "$pkg/etc/logrotate.d" "$pkg/usr/share/man/man1" "$pkg/usr/share/man/man8" "$pkg/usr/share/bash-completion/completions" "$pkg/DEBIAN"
  cp -a dist "$lib/dist"
  rm -rf "$lib/dist/src/bench" "$lib/dist/src/demo"
  find "$lib/dist" -name '*.map' -delete
  cp -a config "$lib/config"
  cp package.json "$lib/"
  mv "$app/node_modules" "$lib/node_modules"
  # The runtime: bin/node and its license; the headers were only for building.
  install -m 0755 "$runtime/bin/node" "$lib/node/bin/node"
  install -m 0644 "$runtime/LICENSE" "$lib/node/LICENSE"
  # As dh_strip would: no debug info or symbol table in shipped binaries (.dynsym stays, which
  # native modules link against).
  "${cross}strip" --remove-section=.comment --remove-section=.note --strip-unneeded "$lib/node/bin/node" "$lib"/node_modules/*/build/Release/*.node
  local cli
  for cli in otad otactl ota-repo ota-server; do
    printf '#!/bin/sh\n# %s, run by the Node.js runtime the package bundles (/usr/lib/otad/node).\nexec /usr/lib/otad/node/bin/node /usr/lib/otad/dist/src/cli/%s.js "$@"\n' "$cli" "$cli" > "$pkg/usr/bin/$cli"
    chmod 0755 "$pkg/usr/bin/$cli"
  done
  install -m 0644 deploy/systemd/otad.service "$pkg/usr/lib/systemd/system/otad.service"
  install -m 0644 deploy/dbus/io.otad.Daemon1.conf "$pkg/usr/share/dbus-1/system.d/io.otad.Daemon1.conf"
  mkdir -p "$pkg/usr/share/dbus-1/system-services"
  install -m 0644 deploy/dbus/io.otad.Daemon1.service "$pkg/usr/share/dbus-1/system-services/io.otad.Daemon1.service"
  install -m 0644 deploy/logrotate/otad "$pkg/etc/logrotate.d/otad"
  local page
  for page in deploy/man/*.[18]; do
    gzip -9n -c "$page" > "$pkg/usr/share/man/man${page##*.}/$(basename "$page").gz"
  done
  # Completion generated from the commander programs themselves (src/cli/completion.ts).
  for cli in otactl otad ota-repo; do
    node dist/src/cli/completion.js "$cli" > "$pkg/usr/share/bash-completion/completions/$cli"
  done
  ln -s ../../../../lib/otad/config/config.example.yaml "$doc/examples/config.example.yaml"
  ln -s ../../../../lib/otad/config/config.no-systemd.example.yaml "$doc/examples/config.no-systemd.example.yaml"
  install -m 0644 README.md "$doc/README.md"
  cp docs/*.md "$doc/"
  install -m 0644 deploy/deb/copyright "$doc/copyright"
  gzip -9n -c deploy/deb/changelog > "$doc/changelog.Debian.gz"
  mkdir -p "$pkg/usr/share/lintian/overrides"
  install -m 0644 deploy/deb/lintian-overrides "$pkg/usr/share/lintian/overrides/otad"
  # Modes as dpkg-deb --root-owner-group records them: root-owned, nothing group- or world-writable.
  find "$pkg" -type d -exec chmod 0755 {} +
  find "$pkg/usr/lib/otad" "$doc" -type f ! -path "$lib/node/bin/node" -exec chmod 0644 {} +
  local script
  for script in postinst prerm postrm; do install -m 0755 "deploy/deb/$script" "$pkg/DEBIAN/$script"; done
  printf '/etc/logrotate.d/otad\n' > "$pkg/DEBIAN/conffiles"
  local size
  size="$(du -sk --exclude=DEBIAN "$pkg" | cut -f1)"
  # libc6 (>= 2.28) and libstdc++6 (>= GLIBCXX_3.4.21, gcc 5) are what the official Node binary
  # links against; libsystemd0 is sd-notify's; adduser for addgroup in postinst.
  cat > "$pkg/DEBIAN/control" <<EOF
Package: otad
Version: $debver
Architecture: $arch
Maintainer: otad maintainers <otad-maintainers@lists.otad.dev>
Installed-Size: $size
Depends: adduser, libc6 (>= 2.28), libgcc-s1 (>= 3.0), libstdc++6 (>= 5), libsystemd0
Recommends: systemd, dbus
Suggests: btrfs-progs
Section: admin
Priority: optional
Description: over-the-air update daemon for fleets of robots
 otad keeps the products installed on a robot up to date from a signed (TUF)
 repository, through an explicit, persisted and crash-proof update lifecycle:
 check, offer, choice, pre-checks, backup, download, switch, restart, health
 probation, and commit or automatic rollback.
 .
 The package bundles the Node.js 24 runtime otad runs on, and ships otactl,
 ota-repo and ota-server, the systemd unit, the D-Bus policy and man pages.
EOF
  local deb="$out/otad_${debver}_${arch}.deb"
  dpkg-deb --root-owner-group -Zxz --build "$pkg" "$deb" >/dev/null
  echo "package-deb: built $deb ($(du -h "$deb" | cut -f1), installed $((size / 1024)) MiB)"
  if [ "${OTA_DEB_LINTIAN:-1}" != 0 ] && command -v lintian >/dev/null; then
    lintian --fail-on error --suppress-tags-from-file /dev/null "$deb" || { echo "package-deb: lintian reports errors for $deb" >&2; exit 1; }
  fi
}

for arch in "${archs[@]}"; do build_one "$arch"; done
