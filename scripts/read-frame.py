#!/usr/bin/env python3
"""scripts/read-frame.py -- read one frame from tap4 as a program with other flags would.

Usage: python3 scripts/read-frame.py FLAGS BUFLEN OFFSET HEX [ip]

Attaches to tap4 with the TUNSETIFF flags FLAGS (0x0002 is IFF_TAP alone, 0x1002 adds
IFF_NO_PI), reads into a BUFLEN-byte buffer, and shows the first frame whose bytes at
OFFSET are HEX; with "ip", also what its IPv4 total length says the frame's length was.
The troubleshooting appendix shows what it prints without IFF_NO_PI (4 bytes more in
front) and with a buffer shorter than the frame (cut off, silently); cargo lab record
runs it (lab/src/record.rs).
"""

import fcntl
import os
import select
import struct
import sys

TUNSETIFF = 0x400454CA

flags, buflen, at, want = int(sys.argv[1], 0), int(sys.argv[2]), int(sys.argv[3]), bytes.fromhex(sys.argv[4])
fd = os.open("/dev/net/tun", os.O_RDWR)
fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH22x", b"tap4", flags))
print("attached to tap4 with flags 0x%04x, reading into a %d-byte buffer" % (flags, buflen), flush=True)
while select.select([fd], [], [], 5)[0]:
    frame = os.read(fd, buflen)
    if frame[at : at + len(want)] == want:
        break
else:
    sys.exit("no such frame came")
print("read() returned %d bytes; the first 24:" % len(frame))
print(" ".join("%02x" % b for b in frame[:24]))
if len(sys.argv) > 5:
    ip_total = int.from_bytes(frame[16:18], "big")
    print(
        "the IPv4 total length inside says %d, so the frame on the wire was 14 + %d = %d bytes:"
        % (ip_total, ip_total, 14 + ip_total)
    )
    print("the last %d bytes were cut off, silently" % (14 + ip_total - len(frame)))
