"""Turns one wrk --latency run (stdin) into a JSON sample line for scripts/bench."""
import json
import re
import sys

round_, path, mode, jiffies, hz, bpf_ns = sys.argv[1:7]
# Optional: total BPF run time over the run (the socket programs), spread per request.
bpf_total_ns = int(sys.argv[7]) if len(sys.argv) > 7 else None
# Optional: the client cgroup's CPU over the run (µs), spread per request.
client_us = int(sys.argv[8]) if len(sys.argv) > 8 else None
text = sys.stdin.read()


def unit_ms(value, unit):
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
total = re.search(r"(\d+) requests in", text)
lat = {p: unit_ms(v, u) for p, v, u in re.findall(r"\s(50|99)(?:\.000)?%\s+([\d.]+)(us|ms|s)", text)}
requests = int(total.group(1)) if total else 0
cpu_us = int(jiffies) * 1e6 / int(hz) / requests if requests else 0
print(json.dumps({
    "round": int(round_), "path": path, "workload": {"close": "conn-per-request", "close-wide": "conn-per-request-wide",
                 "keepalive": "keep-alive"}[mode],
    "value": float(rps.group(1)) if rps else 0.0, "unit": "req/s",
    "p50_ms": lat.get("50", 0.0), "p99_ms": lat.get("99", 0.0),
    "cpu_us_per_request": round(cpu_us, 2), "bpf_ns": int(bpf_ns),
    "errors": "Non-2xx" in text or "Socket errors" in text,
    **({"bpf_ns_per_request": round(bpf_total_ns / requests) if requests else 0}
       if bpf_total_ns is not None else {}),
    **({"client_cpu_us_per_request": round(client_us / requests, 2) if requests else 0}
       if client_us is not None else {}),
}))
