#!/bin/busybox sh
# shellcheck shell=sh
# scripts/vm/init.sh -- the guest's whole user space: PID 1 of the tiny Linux guest that
# `cargo lab vm` (lab/src/vm.rs) and tests/switch.rs boot. It runs from an initramfs holding only busybox,
# this file and the virtio-net kernel modules; no disk, no udev, no systemd.
#
# Kernel command line (set by cargo lab vm, or by tests/switch.rs):
#   tapbook.mode=batch   run the pings, print the results, wait for the host to say
#                        "poweroff" on the console (so it can look at the bridge while
#                        the guest is still up), then power off
#   tapbook.mode=shell   the same pings, then an interactive shell on the console
#   tapbook.mode=keep    the same pings, then stay up (answering pings) until killed
#   tapbook.count=N      pings per address (default 3)
#   tapbook.ip=ADDR      eth0's address, a /24 (default 172.16.1.3); tapbook.ip=dhcp:
#                        ask for one with busybox udhcpc (cargo lab vm --network ours)
#   tapbook.ping=A,B     the addresses to ping, in order (default 172.16.1.2,172.16.1.1)
#   tapbook.wait=SECS    first wait (up to SECS) until each address answers once: on
#                        a switch the other guest may still be booting (default 0)
#
# In batch mode the host may ask for more pings before it says "poweroff": a line
# "ping ADDR" on the console (cargo lab vm --guests 2, once the second guest is up).
#
# Lines starting with "[guest]" are read by cargo lab vm and tests/switch.rs; keep their
# wording in step.

# ANCHOR: setup
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
# ANCHOR_END: setup

say() { echo "[guest] $*"; }

MODE="batch"
COUNT=3
IP=172.16.1.3
TARGETS="172.16.1.2 172.16.1.1"
WAIT=0
read -r cmdline </proc/cmdline
for arg in $cmdline; do
    case $arg in
        tapbook.mode=*) MODE=${arg#*=} ;;
        tapbook.count=*) COUNT=${arg#*=} ;;
        tapbook.ip=*) IP=${arg#*=} ;;
        tapbook.ping=*) TARGETS=$(echo "${arg#*=}" | tr , ' ') ;;
        tapbook.wait=*) WAIT=${arg#*=} ;;
    esac
done

say "init started: Linux $(uname -r), mode $MODE"

# ANCHOR: modules
# The order matters: insmod does not resolve dependencies (modprobe would, but needs
# modules.dep), so every module comes after the ones it uses. cargo lab vm writes the list,
# leaving out whatever the kernel has built in.
loaded=
while read -r module; do
    if insmod "/lib/modules/tapbook/$module.ko"; then
        loaded="$loaded $module"
    else
        say "insmod $module failed"
    fi
done </lib/modules/tapbook/load-order
say "modules loaded:${loaded:- none (all built in)}"
# ANCHOR_END: modules

# The driver probes the PCI device as virtio_net loads; give it a moment.
i=0
while [ ! -e /sys/class/net/eth0 ] && [ $i -lt 50 ]; do
    sleep 0.1
    i=$((i + 1))
done
if [ ! -e /sys/class/net/eth0 ]; then
    say "no eth0: this kernel did not bring up the virtio-net NIC"
    poweroff -f
fi

# ANCHOR: features
# The feature bits the driver and QEMU agreed on, one character per bit ("1" = on),
# from the virtio and virtio-net specifications.
feature_name() {
    case $1 in
        0) echo CSUM ;; 1) echo GUEST_CSUM ;; 2) echo CTRL_GUEST_OFFLOADS ;; 3) echo MTU ;;
        5) echo MAC ;; 7) echo GUEST_TSO4 ;; 8) echo GUEST_TSO6 ;; 9) echo GUEST_ECN ;;
        10) echo GUEST_UFO ;; 11) echo HOST_TSO4 ;; 12) echo HOST_TSO6 ;;
        13) echo HOST_ECN ;; 14) echo HOST_UFO ;; 15) echo MRG_RXBUF ;; 16) echo STATUS ;;
        17) echo CTRL_VQ ;; 18) echo CTRL_RX ;; 19) echo CTRL_VLAN ;;
        20) echo CTRL_RX_EXTRA ;; 21) echo GUEST_ANNOUNCE ;; 22) echo MQ ;;
        23) echo CTRL_MAC_ADDR ;; 28) echo RING_INDIRECT_DESC ;; 29) echo RING_EVENT_IDX ;;
        32) echo VERSION_1 ;; 33) echo ACCESS_PLATFORM ;; 34) echo RING_PACKED ;;
        35) echo IN_ORDER ;; 36) echo ORDER_PLATFORM ;; 37) echo SR_IOV ;;
        38) echo NOTIFICATION_DATA ;; 40) echo RING_RESET ;; 53) echo NOTF_COAL ;;
        57) echo HASH_REPORT ;; 60) echo RSS ;; 62) echo STANDBY ;; 63) echo SPEED_DUPLEX ;;
        *) echo "bit$1" ;;
    esac
}
bits=$(cat /sys/class/net/eth0/device/features 2>/dev/null)
names=
bit=0
while [ -n "$bits" ]; do
    rest=${bits#?}
    [ "${bits%"$rest"}" = 1 ] && names="$names $(feature_name $bit)"
    bits=$rest
    bit=$((bit + 1))
done
driver=$(basename "$(readlink /sys/class/net/eth0/device/driver)")
say "eth0: MAC $(cat /sys/class/net/eth0/address), driver $driver"
say "virtio features agreed:$names"
# ANCHOR_END: features

# ANCHOR: network
ip link set lo up
ip link set eth0 up
# Carrier follows the tap (or the socket) on the host side; wait for it (at most 5 s)
# so that the first frame is not lost to a link that is still coming up.
i=0
while [ "$(cat /sys/class/net/eth0/carrier 2>/dev/null)" != 1 ] && [ $i -lt 50 ]; do
    sleep 0.1
    i=$((i + 1))
done
if [ "$IP" = dhcp ]; then
    # udhcpc only talks DHCP; at each event it runs a script with the lease in its
    # environment, and the script puts the address and the route on the interface.
    cat >/bin/dhcp-event <<'SCRIPT'
#!/bin/sh
case $1 in
    bound | renew)
        ip addr replace "$ip/${mask:-24}" dev "$interface"
        [ -z "$router" ] || ip route replace default via "${router%% *}" dev "$interface"
        ;;
esac
SCRIPT
    chmod +x /bin/dhcp-event
    udhcpc -i eth0 -n -q -t 5 -T 3 -s /bin/dhcp-event || say "no DHCP lease"
    IP=$(ip -4 -o addr show dev eth0 | awk '{ split($4, a, "/"); print a[1] }')
    say "eth0 is up with ${IP:-no address}/24 (from DHCP)"
else
    ip addr add "$IP/24" dev eth0
    say "eth0 is up with $IP/24"
fi
# ANCHOR_END: network

# ANCHOR: pings
pings() {
    i=0
    until [ $i -ge "$WAIT" ] || ping -c 1 -W 1 "$1" >/dev/null 2>&1; do
        i=$((i + 1))
    done
    say "ping -c $COUNT $1"
    ping -c "$COUNT" -i 0.2 -w 15 "$1" || say "ping $1 failed"
}
for target in $TARGETS; do
    pings "$target"
done
say "neighbours learnt:"
ip neigh show dev eth0
say "eth0 counters: rx $(cat /sys/class/net/eth0/statistics/rx_packets) packets," \
    "tx $(cat /sys/class/net/eth0/statistics/tx_packets) packets"
# ANCHOR_END: pings

case $MODE in
    shell)
        say "shell: try 'ping 172.16.1.2', 'ip neigh', 'cat /proc/net/dev'; 'exit' powers off"
        setsid cttyhack sh
        ;;
    keep)
        say "staying up; ping $IP from the lab namespace"
        while :; do sleep 3600; done
        ;;
    *)
        # ANCHOR: handshake
        say "done; waiting for the host to say poweroff"
        # The host may ask for more pings first: "ping ADDR" (a guest booted after us).
        # shellcheck disable=SC3045 # busybox ash has read -t
        while read -r -t 120 command target && [ "$command" = ping ]; do
            pings "$target"
            say "done; waiting for the host to say poweroff"
        done
        # ANCHOR_END: handshake
        ;;
esac
say "powering off"
poweroff -f
