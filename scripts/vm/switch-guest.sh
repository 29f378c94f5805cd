#!/bin/busybox sh
# shellcheck shell=sh
# scripts/vm/switch-guest.sh -- PID 1 of a guest on our relay or switch (chapters 11
# and 12). It is laid over the initramfs that cargo lab vm builds (busybox, the
# virtio-net modules and their load-order) as a second cpio archive holding only /init:
# the kernel unpacks both, and the later /init wins. Everything it needs comes from the
# kernel command line, so that two guests can share one initramfs:
#
#   tapbook.ip=ADDR        the guest's address on eth0 (a /24)
#   tapbook.ping=A,B,...   the addresses to ping, in order
#   tapbook.count=N        pings per address (default 3)
#
# It waits (up to 60 s) until each address answers once, since the other guest may
# still be booting, then pings it COUNT times; prints its neighbours, says "done" and
# stays up, answering pings, until QEMU is stopped. Lines starting with "[guest]" are
# read by tests/switch.rs.

/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev

say() { echo "[guest] $*"; }

IP=
TARGETS=
COUNT=3
read -r cmdline </proc/cmdline
for arg in $cmdline; do
    case $arg in
        tapbook.ip=*) IP=${arg#*=} ;;
        tapbook.ping=*) TARGETS=$(echo "${arg#*=}" | tr , ' ') ;;
        tapbook.count=*) COUNT=${arg#*=} ;;
    esac
done

while read -r module; do
    insmod "/lib/modules/tapbook/$module.ko" || say "insmod $module failed"
done </lib/modules/tapbook/load-order
i=0
while [ ! -e /sys/class/net/eth0 ] && [ $i -lt 50 ]; do
    sleep 0.1
    i=$((i + 1))
done

# ANCHOR: network
ip link set lo up
ip link set eth0 up
ip addr add "$IP/24" dev eth0
say "eth0 $(cat /sys/class/net/eth0/address) is up with $IP/24"
for target in $TARGETS; do
    i=0
    until ping -c 1 -W 1 "$target" >/dev/null 2>&1 || [ $i -ge 60 ]; do
        i=$((i + 1))
    done
    say "ping -c $COUNT $target"
    ping -c "$COUNT" -i 0.2 -w 15 "$target" || say "ping $target failed"
done
say "neighbours learnt:"
ip neigh show dev eth0
say "done"
# ANCHOR_END: network
while :; do sleep 3600; done
