#!/usr/bin/env python3
"""scripts/dhcp/udp_echo.py -- send three datagrams (5, 0 and 1472 bytes) to the UDP echo
service of 172.16.1.2 (port 7) from an ordinary kernel socket, and check what comes back.
The kernel verifies the UDP checksum of every datagram it delivers: a reply with a wrong
one never reaches recvfrom, and /proc/net/snmp counts it as InCsumErrors."""
import socket

s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(1)
for data in (b"hello", b"", bytes(1472)):
    s.sendto(data, ("172.16.1.2", 7))
    back, peer = s.recvfrom(2048)
    print(len(data), "bytes sent,", len(back), "back from", peer, "same:", back == data)
