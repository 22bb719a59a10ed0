#!/usr/bin/env python3
"""Close-per-request HTTP load for the ECMP lab (BGPTests), run in the client namespace.

  ecmp_load.py VIP PORT OUT --count N --rate R --timeout T

Starts one connection every 1/R seconds (each in a thread of its own, at most 256 at
once), N in all, and gives up on the whole run after N/R + T + 5 seconds. Each
connection: connect (within T seconds), `GET / HTTP/1.0`, read the answer to EOF
(within T seconds). The backends (nginx) answer "NAME PROXY_ADDR REMOTE_ADDR": the
client address their PROXY header named and the balancer's SNAT address they saw.
Writes to OUT a JSON list, one entry per connection, in start order:
  {"start": CLOCK_MONOTONIC seconds, "end": ..., "ok": bool, "backend", "proxy", "snat", "error"}
"""
import json, socket, sys, threading, time


def one(vip, port, timeout, result):
    result["start"] = time.monotonic()
    try:
        with socket.create_connection((vip, port), timeout=timeout) as s:
            s.sendall(b"GET / HTTP/1.0\r\nHost: vip\r\n\r\n")
            data = b""
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
        head, _, body = data.decode(errors="replace").partition("\r\n\r\n")
        fields = body.split()
        if not head.startswith("HTTP/1.1 200") or len(fields) != 3:
            raise ValueError("answer %r" % data[:200])
        result.update(ok=True, backend=fields[0], proxy=fields[1], snat=fields[2])
    except Exception as e:
        result.update(ok=False, error="%s: %s" % (type(e).__name__, e))
    result["end"] = time.monotonic()


def main():
    vip, port, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    opts = dict(zip(sys.argv[4::2], sys.argv[5::2]))
    count = int(opts.get("--count", "100"))
    rate = float(opts.get("--rate", "200"))
    timeout = float(opts.get("--timeout", "1"))
    deadline = time.monotonic() + count / rate + timeout + 5
    slots = threading.Semaphore(256)
    results, threads = [], []

    def run(result):
        try:
            one(vip, port, timeout, result)
        finally:
            slots.release()

    begin = time.monotonic()
    for i in range(count):
        delay = begin + i / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        if not slots.acquire(timeout=max(0.0, deadline - time.monotonic())):
            break
        result = {"ok": False, "error": "not finished", "start": time.monotonic(), "end": None}
        results.append(result)
        t = threading.Thread(target=run, args=(result,), daemon=True)
        t.start()
        threads.append(t)
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    with open(out, "w") as f:
        json.dump(results, f)


if __name__ == "__main__":
    main()
