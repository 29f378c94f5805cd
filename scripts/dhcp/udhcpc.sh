#!/bin/sh
# scripts/dhcp/udhcpc.sh -- the script busybox udhcpc runs at each DHCP event (chapter
# "UDP and DHCP"): $1 is deconfig, bound, renew, leasefail or nak, and the lease is in the
# environment. It prints the lease and, once bound, puts the address on the interface,
# so that the kernel can send the renewal and the release from it.
# Usage: sudo busybox udhcpc -i tap4 -f -s scripts/dhcp/udhcpc.sh
# shellcheck disable=SC2154 # ip, subnet, router, lease, serverid, interface: udhcpc's
echo "script: $1 ip=$ip subnet=$subnet router=$router lease=$lease serverid=$serverid"
case $1 in
    bound | renew) ip addr replace "$ip/$subnet" dev "$interface" ;;
esac
