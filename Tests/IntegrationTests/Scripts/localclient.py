import json, socket, sys, threading

def block(seed, size=1 << 16):
    x = (seed * 2654435761 + 1) & 0xFFFFFFFF
    out = bytearray(size)
    for i in range(size):
        x ^= (x << 13) & 0xFFFFFFFF
        x ^= x >> 17
        x ^= (x << 5) & 0xFFFFFFFF
        out[i] = x & 0xFF
    return bytes(out)

def endpoint(name):
    host, port = name[0], name[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

def read_all(s):
    out = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            return out
        out += chunk

mode, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
report = {}
try:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    s.settimeout(20)
    if mode == "reconnect":
        try:
            s.connect((host, port))
        except OSError as e:
            report["first_errno"] = e.errno
        host, port = sys.argv[4], int(sys.argv[5])
        mode = "send"
        sys.argv[4] = "again"
        try:
            s.connect((host, port))
        except ConnectionAbortedError:
            s.connect((host, port))   # Linux reports the earlier failure once more first
    else:
        s.connect((host, port))
    report["sockname"] = endpoint(s.getsockname())
    report["peername"] = endpoint(s.getpeername())
    if mode == "send":
        s.sendall(sys.argv[4].encode())
        report["received"] = read_all(s).decode(errors="replace")
    elif mode == "banner":
        line = b""
        while not line.endswith(b"\n"):
            chunk = s.recv(1)
            if not chunk:
                break
            line += chunk
        report["banner"] = line.decode(errors="replace")
        s.sendall(b"QUIT\r\n")
        report["received"] = read_all(s).decode(errors="replace")
    elif mode == "stream":
        total = int(sys.argv[4])
        def send():
            b = block(1)
            sent = 0
            while sent < total:
                n = min(len(b), total - sent)
                s.sendall(b[:n])
                sent += n
            s.shutdown(socket.SHUT_WR)
        t = threading.Thread(target=send)
        t.start()
        b = block(2)
        count, intact = 0, True
        while True:
            chunk = s.recv(1 << 18)
            if not chunk:
                break
            if intact:
                view, at = memoryview(chunk), count % len(b)
                while len(view):
                    n = min(len(b) - at, len(view))
                    if view[:n] != b[at:at + n]:
                        intact = False
                        break
                    view, at = view[n:], (at + n) % len(b)
            count += len(chunk)
        t.join()
        report["sent"], report["count"], report["intact"] = total, count, intact
except OSError as e:
    report["error"], report["errno"] = str(e), e.errno
print(json.dumps(report))
