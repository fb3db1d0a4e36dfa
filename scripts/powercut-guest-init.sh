#!/bin/sh
# PID 1 of the power-cut guest (npm run powercut, docs/crash-testing.md "Power cuts"), started by
# /sbin/powercut-init on the root disk once the project disk is mounted read-only at /opt/otad.
#
# No systemd: the guest boots in seconds under software emulation, and otad is the product's
# service manager (the process service manager), as on a robot without systemd. In order:
# mount the kernel file systems, bring up the network of qemu's user mode (the host is 10.0.2.2),
# install the run's seed on the first boot, record what the power cut left BEFORE otad touches it,
# start otad, and serve the checks to the host (dist/src/bench/powercut-guest.js, port 8471).
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8
mountpoint -q /proc || mount -t proc proc /proc
mountpoint -q /sys || mount -t sysfs sysfs /sys
mountpoint -q /dev || mount -t devtmpfs devtmpfs /dev
mountpoint -q /run || mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /tmp
mount -o remount,rw / || echo "powercut-init: / stays read-only"
busybox ip link set lo up
busybox ip link set eth0 up
busybox ip addr add 10.0.2.15/24 dev eth0
busybox ip route add default via 10.0.2.2
echo "nameserver 10.0.2.3" > /run/resolv.conf

NODE=/opt/otad/node/bin/node
APP=/opt/otad/app
SEED=/opt/otad/seed
if [ ! -e /var/lib/ota/.powercut-installed ]; then
  # The installation of the robot: configuration, trusted root, tokens, the product at 1.0.0.
  mkdir -p /etc/ota /var/lib/ota /opt
  cp -a "$SEED/etc/." /etc/ota/
  cp -a "$SEED/product" /opt/robot-ai
  # Warm Node's compile cache: Node writes it when a process exits, and otad is never let exit.
  NODE_COMPILE_CACHE=/var/cache/powercut-node "$NODE" "$APP/dist/src/cli/otad.js" --version > /dev/null 2>&1
  NODE_COMPILE_CACHE=/var/cache/powercut-node "$NODE" "$APP/dist/src/bench/powercut-guest.js" pre > /dev/null 2>&1
  sync
  touch /var/lib/ota/.powercut-installed
  sync
fi

# What the cut left is read before otad starts (and printed on the console), then otad starts and
# the checks are served to the host: one Node process does the three (dist/src/bench/powercut-guest.js).
# Node's compile cache makes every start after the first cheaper (it is only a cache: Node checks it).
export NODE_COMPILE_CACHE=/var/cache/powercut-node
"$NODE" "$APP/dist/src/bench/powercut-guest.js" boot > /run/powercut-guest.log 2>&1 &

# PID 1 reaps whatever ends (the product's services are detached children of otad).
while :; do
  wait
  sleep 1
done
