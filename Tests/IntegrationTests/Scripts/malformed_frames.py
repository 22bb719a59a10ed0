import random, socket, struct, sys

kind, mac, vip, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind(("c0", 0))
src_mac = open("/sys/class/net/c0/address").read().strip()
eth = bytes.fromhex(mac.replace(":", "")) + bytes.fromhex(src_mac.replace(":", "")) + b"\x08\x00"
dst = socket.inet_aton(vip)

def csum(b):
    if len(b) % 2: b += b"\0"
    t = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    t = (t & 0xFFFF) + (t >> 16); t = (t & 0xFFFF) + (t >> 16)
    return ~t & 0xFFFF

def tcp(src, sport, flags, seq=1000, doff=5, payload=b"", options=b""):
    h = struct.pack("!HHIIBBHHH", sport, 80, seq, 0, doff << 4, flags, 65535, 0, 0) + options
    c = csum(src + dst + struct.pack("!BBH", 0, 6, len(h) + len(payload)) + h + payload)
    return h[:16] + struct.pack("!H", c) + h[18:] + payload

def ip(src, body, ihl=5, frag=0x4000, tot=None, options=b""):
    tot = tot if tot is not None else 20 + len(options) + len(body)
    h = struct.pack("!BBHHHBBH4s4s", 0x40 | ihl, 0, tot, 1, frag, 64, 6, 0, src, dst) + options
    h = h[:10] + struct.pack("!H", csum(h)) + h[12:]
    return h + body

me = socket.inet_aton("198.18.1.2")
if kind == "malformed":
    frames = []
    good = tcp(me, 40001, 0x02)
    frames.append(ip(me, good)[:30])                               # truncated IP header
    frames.append(ip(me, good)[:20 + 10])                          # truncated TCP header
    frames.append(ip(me, good, tot=200))                           # IP length past the frame
    frames.append(ip(me, good, ihl=4))                             # IHL < 5
    frames.append(ip(me, tcp(me, 40002, 0x02, doff=3)))            # data offset < 5
    frames.append(ip(me, tcp(me, 40003, 0x02, doff=15)))           # data offset past the packet
    frames.append(ip(me, tcp(me, 40004, 0x10, payload=b"x" * 20), options=b"\x01\x01\x01\x00", ihl=6))  # options, no conn
    frames.append(ip(me, tcp(me, 40005, 0x02), frag=0x2000))       # first fragment
    frames.append(ip(me, b"\x00" * 16, frag=0x0003))               # later fragment
    for flags in range(256):                                       # every flag combination
        frames.append(ip(me, tcp(me, 41000 + flags, flags, payload=b"data" if flags & 0x08 else b"")))
    for f in frames:
        s.send(eth + f)
elif kind == "synflood":
    rng = random.Random(7)
    for i in range(count):
        src = struct.pack("!BBBB", 198, 19, rng.randrange(256), rng.randrange(1, 255))
        s.send(eth + ip(src, tcp(src, rng.randrange(1024, 65535), 0x02, seq=rng.randrange(1 << 32))))
