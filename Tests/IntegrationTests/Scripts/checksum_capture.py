"""Captures the TCP segments an interface receives and checks each one's checksum
field for what the kernel says the skb is (PACKET_AUXDATA):

- TP_STATUS_CSUMNOTREADY (the skb is CHECKSUM_PARTIAL: the sender's stack, or a
  NIC, sums the payload later): the field must hold the pseudo-header sum of the
  segment's own addresses and length, folded and not complemented, as
  tcp_v4_send_check() leaves it. A rewrite that changed an address without the
  pseudo-header part of the checksum, or that added a port or sequence change to
  it, shows here; on a veth the receiver never checks, so nothing else would.
- otherwise: the full TCP checksum must verify.

Usage: checksum_capture.py IFACE PORT SECONDS READY_FILE
Prints one JSON line: {"partial": n, "full": n, "bad": [...]} for the IPv4 TCP
segments the interface received (not sent) to or from PORT within SECONDS.
"""
import json
import os
import socket
import struct
import sys
import time

SOL_PACKET = 263
PACKET_AUXDATA = 8
PACKET_OUTGOING = 4
TP_STATUS_CSUMNOTREADY = 1 << 3
ETH_P_ALL = 0x0003


def ones_sum(data):
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def main():
    iface, port, seconds, ready = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    s.bind((iface, 0))
    s.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1)
    s.settimeout(0.2)
    open(ready, "w").close()
    partial = full = 0
    bad = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            frame, anc, _, addr = s.recvmsg(65535, socket.CMSG_SPACE(32))
        except socket.timeout:
            continue
        if addr[2] == PACKET_OUTGOING or len(frame) < 14 + 20 + 20 or frame[12:14] != b"\x08\x00":
            continue
        ip = frame[14:]
        ihl = (ip[0] & 15) * 4
        total = struct.unpack("!H", ip[2:4])[0]
        if ip[9] != socket.IPPROTO_TCP or total > len(ip):
            continue
        tcp = ip[ihl:total]
        sport, dport = struct.unpack("!HH", tcp[:4])
        if port not in (sport, dport):
            continue
        status = 0
        for level, kind, data in anc:
            if level == SOL_PACKET and kind == PACKET_AUXDATA:
                status = struct.unpack("I", data[:4])[0]
        pseudo = ip[12:20] + struct.pack("!BBH", 0, socket.IPPROTO_TCP, len(tcp))
        field = struct.unpack("!H", tcp[16:18])[0]
        what = f"{socket.inet_ntoa(ip[12:16])}:{sport} > {socket.inet_ntoa(ip[16:20])}:{dport} len {len(tcp)}"
        if status & TP_STATUS_CSUMNOTREADY:
            partial += 1
            want = ones_sum(pseudo)
            if field != want and {field, want} != {0, 0xFFFF}:
                bad.append(f"{what}: partial, field {field:#06x}, pseudo-header sum {want:#06x}")
        else:
            full += 1
            if ones_sum(pseudo + tcp) != 0xFFFF:
                bad.append(f"{what}: full checksum {field:#06x} does not verify")
    print(json.dumps({"partial": partial, "full": full, "bad": bad}))


if __name__ == "__main__":
    main()
