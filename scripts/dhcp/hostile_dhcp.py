#!/usr/bin/env python3
"""scripts/dhcp/hostile_dhcp.py -- send the DHCP server at 172.16.1.2 four BOOTREQUESTs
that it must drop: a wrong magic cookie, an option whose length runs past the end, no End
option, and one that claims to come through a relay. From a kernel UDP socket on port 68
(root: a port below 1024), so that everything below DHCP is right."""
import socket
import struct

s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("172.16.1.1", 68))
mac = bytes.fromhex("020000000001")
# op 1 (request), htype 1, hlen 6, hops 0, xid, secs, flags; ciaddr yiaddr siaddr giaddr;
# chaddr (6 + 10 bytes of padding); sname and file (192 bytes).
fixed = struct.pack("!BBBBIHH", 1, 1, 6, 0, 0x1234, 0, 0) + bytes(16) + mac + bytes(10 + 192)
COOKIE = "63825363"
for what, options in [
    ("wrong magic cookie", "63825364" + "350101" + "ff"),
    ("option 12 claims 64 bytes, 2 follow", COOKIE + "350101" + "0c40" + "6162"),
    ("no End option", COOKIE + "350101"),
]:
    s.sendto(fixed + bytes.fromhex(options), ("172.16.1.2", 67))
    print("sent:", what)
relayed = fixed[:24] + bytes([10, 0, 0, 1]) + fixed[28:] + bytes.fromhex(COOKIE + "350101ff")
s.sendto(relayed, ("172.16.1.2", 67))
print("sent: relayed (giaddr 10.0.0.1)")
