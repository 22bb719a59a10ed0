"""Summarises scripts/bench samples: a markdown table in docs/benchmarks.md (between
markers), raw.json beside the samples, and a bar chart of the ratios to direct."""
import json
import statistics
import sys

raw_path, out_dir, doc_path, png_path, rounds, duration = sys.argv[1:7]
samples = [json.loads(line) for line in open(raw_path) if line.strip()]
json.dump(samples, open(f"{out_dir}/raw.json", "w"), indent=1)

# A run with --only measures one group of paths: the other is left out of the table.
measured = {s["path"] for s in samples}
paths = [p for p in ["direct", "tc-forward", "ppctl", "ppctl-proxyv2", "haproxy", "nftables"] if p in measured]
# BPF ns per packet is shown for the paths that run a tc program: ppctl's, the bare
# forwarder (tc-forward), which is the yardstick ("x fwd": ratio to it, same workload),
# and direct, whose packets pass ppctl's ingress program untouched (a miss: what ppctl
# costs traffic that is not its own).
bpf_paths = ("direct", "tc-forward", "ppctl")
workloads = [("throughput", "Gbit/s", 1e-9), ("conn-per-request", "req/s", 1),
             ("conn-per-request-wide", "req/s", 1), ("keep-alive", "req/s", 1)]


def pick(path, workload, key="value"):
    return [s[key] for s in samples if s["path"] == path and s["workload"] == workload and key in s]


rows = ["| workload | path | median | min | max | ratio to direct | p50 / p99 ms | CPU µs/req | BPF ns/pkt | BPF x fwd |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"] if paths else []
ratios = {}
for workload, unit, scale in workloads:
    base = statistics.median(pick("direct", workload) or [0])
    fwd_bpf = statistics.median([v for v in pick("tc-forward", workload, "bpf_ns") if v] or [0])
    for path in paths:
        values = [v for v in pick(path, workload) if v]
        if not values:
            rows.append(f"| {workload} | {path} | failed | | | | | | | |")
            continue
        med = statistics.median(values)
        ratio = med / base if base else 0
        ratios[(workload, path)] = ratio
        p50 = pick(path, workload, "p50_ms")
        p99 = pick(path, workload, "p99_ms")
        cpu = pick(path, workload, "cpu_us_per_request")
        bpf = [v for v in pick(path, workload, "bpf_ns") if v]
        lat = f"{statistics.median(p50):.2f} / {statistics.median(p99):.2f}" if p50 else "-"
        bpf_ns = statistics.median(bpf) if bpf and path.startswith(bpf_paths) else None
        rows.append(f"| {workload} | {path} | {med * scale:,.2f} {unit} | {min(values) * scale:,.2f} | "
                    f"{max(values) * scale:,.2f} | {ratio:.2f} | {lat} | "
                    f"{statistics.median(cpu) if cpu else '-'} | "
                    f"{bpf_ns if bpf_ns is not None else '-'} | "
                    f"{f'{bpf_ns / fwd_bpf:.2f}' if bpf_ns is not None and fwd_bpf else '-'} |")

# Local clients (the socket path): ratios to local-direct, and the extra CPU per
# connection against it.
local_paths = [p for p in ["local-direct", "local-ppctl", "local-ppctl-proxyv2"] if p in measured]
rows += [] if not local_paths else ["", "| local clients | path | median | min | max | ratio to local-direct | p50 / p99 ms | CPU µs/req | extra CPU µs/conn | client CPU µs/req (extra) | ppctl BPF ns/req |",
         "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
for workload in ["conn-per-request", "keep-alive"] if local_paths else []:
    base = statistics.median(pick("local-direct", workload) or [0])
    base_cpu = statistics.median(pick("local-direct", workload, "cpu_us_per_request") or [0])
    base_client = statistics.median(pick("local-direct", workload, "client_cpu_us_per_request") or [0])
    for path in local_paths:
        values = [v for v in pick(path, workload) if v]
        if not values:
            rows.append(f"| {workload} | {path} | failed | | | | | | | | |")
            continue
        med = statistics.median(values)
        bpf = [v for v in pick(path, workload, "bpf_ns_per_request") if v]
        p50 = pick(path, workload, "p50_ms")
        p99 = pick(path, workload, "p99_ms")
        cpu = statistics.median(pick(path, workload, "cpu_us_per_request"))
        extra = f"{cpu - base_cpu:+.2f}" if workload == "conn-per-request" and path != "local-direct" else "-"
        client = pick(path, workload, "client_cpu_us_per_request")
        client_text = "-"
        if client:
            c = statistics.median(client)
            client_text = f"{c:.2f}" + (f" ({c - base_client:+.2f})" if path != "local-direct" else "")
        rows.append(f"| {workload} | {path} | {med:,.2f} req/s | {min(values):,.2f} | {max(values):,.2f} | "
                    f"{med / base if base else 0:.2f} | {statistics.median(p50):.2f} / {statistics.median(p99):.2f} | "
                    f"{cpu} | {extra} | {client_text} | {statistics.median(bpf) if bpf else '-'} |")

table = "\n".join(rows)
table += f"\n\n{rounds} rounds of {duration} s per path and workload, interleaved; run id `{out_dir}`.\n"
try:
    doc = open(doc_path).read()
except FileNotFoundError:
    doc = "# Benchmarks\n\n<!-- bench:table:start -->\n<!-- bench:table:end -->\n"
start, end = "<!-- bench:table:start -->", "<!-- bench:table:end -->"
before, rest = doc.split(start, 1)
_, after = rest.split(end, 1)
open(doc_path, "w").write(before + start + "\n" + table + end + after)
print(table)

import matplotlib  # noqa: E402
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

fig, ax = plt.subplots(figsize=(9, 4))
others = paths[1:]
width = 0.8 / max(len(others), 1)
for i, path in enumerate(others):
    xs = [j + (i - (len(others) - 1) / 2) * width for j in range(len(workloads))]
    ax.bar(xs, [ratios.get((w, path), 0) for w, _, _ in workloads], width, label=path)
ax.axhline(1.0, color="black", linewidth=0.8)
ax.set_xticks(range(len(workloads)))
ax.set_xticklabels([w for w, _, _ in workloads])
ax.set_ylabel("ratio to direct routing (median)")
ax.set_title("ppctl and peers, relative to direct routing through the balancer namespace")
ax.legend()
fig.tight_layout()
fig.savefig(png_path, dpi=110)
