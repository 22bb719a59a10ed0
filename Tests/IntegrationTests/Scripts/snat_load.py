#!/usr/bin/env python3
"""Close-per-request load through a ppctl service, and the backend that checks it.

  snat_load.py server ADDR PORT v2|none
      Accepts connections; reads the PROXY v2 header (v2) and one request line; answers
      with the header's source "IP:PORT" (or "-") and the peer it saw, then closes first
      (so that the backend holds every tuple in TIME_WAIT, the case SNAT must respect).
  snat_load.py client VIP PORT [--count N] [--sources FILE] [--workers N] [--header]
      Opens N connections one after the other (or from each "ADDR PORT" line of FILE,
      bound to that source), each: connect, one line, read the answer to EOF, close.
      With --header, the answer must name the connection's own address and port.
      Prints a JSON summary: ok, refused (RST), timeouts, wrong (header names another),
      errors, seconds, snat (the distinct source addresses the backend saw).
"""
import json, queue, socket, struct, sys, threading, time


def serve(addr, port, mode):
    family = socket.AF_INET6 if ":" in addr else socket.AF_INET
    lst = socket.socket(family, socket.SOCK_STREAM)
    lst.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lst.bind((addr, port))
    lst.listen(1024)

    def handle(c, peer):
        try:
            c.settimeout(5)
            source = "-"
            if mode == "v2":
                head = read_exactly(c, 16)
                body = read_exactly(c, struct.unpack("!H", head[14:16])[0])
                if head[13] == 0x11:
                    source = "%s:%d" % (socket.inet_ntop(socket.AF_INET, body[0:4]), struct.unpack("!H", body[8:10])[0])
                elif head[13] == 0x21:
                    source = "[%s]:%d" % (socket.inet_ntop(socket.AF_INET6, body[0:16]), struct.unpack("!H", body[32:34])[0])
            line = b""
            while not line.endswith(b"\n"):
                chunk = c.recv(64)
                if not chunk:
                    break
                line += chunk
            c.sendall(("%s %s:%d\n" % (source, peer[0], peer[1])).encode())
        except OSError:
            pass
        finally:
            c.close()

    while True:
        c, peer = lst.accept()
        threading.Thread(target=handle, args=(c, peer), daemon=True).start()


def read_exactly(c, n):
    out = b""
    while len(out) < n:
        chunk = c.recv(n - len(out))
        if not chunk:
            raise OSError("short read")
        out += chunk
    return out


def client(vip, port, count, sources, workers, header):
    family = socket.AF_INET6 if ":" in vip else socket.AF_INET
    jobs = queue.Queue()
    for job in (sources or [None] * count):
        jobs.put(job)
    lock = threading.Lock()
    result = {"ok": 0, "refused": 0, "timeouts": 0, "wrong": 0, "errors": 0, "snat": set(), "first_error": ""}

    def one(source):
        s = socket.socket(family, socket.SOCK_STREAM)
        s.settimeout(5)
        try:
            if source:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind(source)
            for attempt in range(250):      # the port's previous connection may still be closing
                try:
                    s.connect((vip, port))
                    break
                except OSError as e:
                    if e.errno != 99 or attempt == 249:  # EADDRNOTAVAIL
                        raise
                    time.sleep(0.02)
            me = s.getsockname()
            s.sendall(b"hello\n")
            answer = b""
            while True:
                chunk = s.recv(256)
                if not chunk:
                    break
                answer += chunk
            named, seen = answer.decode().split()
            with lock:
                result["snat"].add(seen.rsplit(":", 1)[0])
                if header and named != "%s:%d" % (me[0], me[1]):
                    result["wrong"] += 1
                else:
                    result["ok"] += 1
        except ConnectionRefusedError as e:
            note("refused", e)
        except socket.timeout as e:
            note("timeouts", e)
        except (OSError, ValueError) as e:
            note("errors", e)
        finally:
            s.close()

    def note(kind, e):
        with lock:
            result[kind] += 1
            result["first_error"] = result["first_error"] or repr(e)

    def work():
        while True:
            try:
                job = jobs.get_nowait()
            except queue.Empty:
                return
            one(job)

    start = time.time()
    threads = [threading.Thread(target=work) for _ in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    result["seconds"] = round(time.time() - start, 2)
    result["snat"] = sorted(result["snat"])
    print(json.dumps(result))


def main(argv):
    if argv[1] == "server":
        serve(argv[2], int(argv[3]), argv[4])
    else:
        args = dict(count=1, sources=None, workers=1, header=False)
        rest = argv[4:]
        while rest:
            opt = rest.pop(0)
            if opt == "--header":
                args["header"] = True
            elif opt == "--count":
                args["count"] = int(rest.pop(0))
            elif opt == "--workers":
                args["workers"] = int(rest.pop(0))
            elif opt == "--sources":
                with open(rest.pop(0)) as f:
                    args["sources"] = [(a, int(p)) for a, p in (line.split() for line in f if line.strip())]
        client(argv[2], int(argv[3]), **args)


if __name__ == "__main__":
    main(sys.argv)
