#!/usr/bin/env python3
"""scripts/udp-flows.py -- the kernel's side of chapter 9's flows: UDP sockets in the
lab's namespace that send to the program behind tap4, or receive what it sends.

Usage:
  udp-flows.py send [--flows N] [--datagrams K] [--size B] [--segment S]
                    [--first-port P] [--to ADDR:PORT]
  udp-flows.py receive [--at ADDR:PORT] [--bytes N] [--timeout SECONDS]

send: from 172.16.1.1, ports P, P+1, ... (one socket per flow, N flows), K sends
of B bytes per flow, the flows taking turns. With --segment S each send carries
UDP_SEGMENT S: the kernel makes one superframe of it, cut into datagrams of S
bytes (by itself for a plain tap, by the reader for one with USO). DF is set
(IP_PMTUDISC_DO), so that each flow's IPv4 identifications start from 0 and two
runs give the same bytes. Defaults: 1 flow, 1 send of 300 bytes, no
UDP_SEGMENT, first port 40000, to 172.16.1.2:9000.

receive: binds ADDR:PORT (default 172.16.1.1:9001) and counts the bytes and
datagrams that arrive, until N bytes (default 300000) or SECONDS (default 5)
without one; then prints "the socket received B bytes in D datagrams" and
exits 0 if B reached N.

Run it inside the namespace: sudo ip netns exec NS python3 scripts/udp-flows.py send
"""

import argparse
import socket
import sys

UDP_SEGMENT = 103  # <linux/udp.h>
IP_MTU_DISCOVER, IP_PMTUDISC_DO = 10, 2  # <linux/in.h>


def addr(text):
    host, _, port = text.rpartition(":")
    return host, int(port)


def send(args):
    sockets = []
    for port in range(args.first_port, args.first_port + args.flows):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_DO)
        s.bind(("172.16.1.1", port))
        if args.segment:
            s.setsockopt(socket.IPPROTO_UDP, UDP_SEGMENT, args.segment)
        sockets.append(s)
    payload = bytes(i % 251 for i in range(args.size))
    for _ in range(args.datagrams):
        for s in sockets:
            s.sendto(payload, args.to)


def receive(args):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    s.bind(args.at)
    s.settimeout(args.timeout)
    print(f"(a UDP socket bound to {args.at[0]}:{args.at[1]}, waiting)", flush=True)
    received = datagrams = 0
    try:
        while received < args.bytes:
            received += len(s.recv(65536))
            datagrams += 1
    except socket.timeout:
        pass
    print(f"the socket received {received} bytes in {datagrams} datagrams")
    return 0 if received >= args.bytes else 1


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("send")
    p.add_argument("--flows", type=int, default=1)
    p.add_argument("--datagrams", type=int, default=1)
    p.add_argument("--size", type=int, default=300)
    p.add_argument("--segment", type=int, default=0)
    p.add_argument("--first-port", type=int, default=40000)
    p.add_argument("--to", type=addr, default=("172.16.1.2", 9000))
    p = sub.add_parser("receive")
    p.add_argument("--at", type=addr, default=("172.16.1.1", 9001))
    p.add_argument("--bytes", type=int, default=300000)
    p.add_argument("--timeout", type=float, default=5.0)
    args = parser.parse_args()
    if args.command == "send":
        send(args)
        return 0
    return receive(args)


if __name__ == "__main__":
    sys.exit(main())
