import CLibbpf
import DatapathABI
import Foundation
import XCTest

/// The per-packet benchmark of `scripts/bench --bpf`: ppctl_tc_ingress and the bare
/// forwarder of bpf/testing/forward.bpf.c run with BPF_PROG_TEST_RUN on the same
/// lab, ns per packet as the kernel times them. Skipped unless PPCTL_BENCH_BPF names
/// the file the Markdown table is written to.
///
/// Method. BPF_PROG_TEST_RUN with a repeat count runs the program again and again on
/// the same skb, which the program rewrites: after the first run a NAT'ed packet is
/// no longer the packet being measured. So every case is measured as `calls` test
/// runs of one repetition each, each on a fresh copy of the frame, and the kernel's
/// `duration` (which excludes the system call, but includes one clock read pair) is
/// averaged; the median of `rounds` interleaved rounds is reported. A SYN creates a
/// connection, so each SYN call uses a new source port, and the connections a round
/// made are deleted after it (untimed): every round starts from the same table. Cases a repeat does not change (a
/// miss, the forwarder, the empty program) are also run with repeat = 1,000,000.
final class PacketBenchmark: XCTestCase {
    static let calls = 20_000
    static let synCalls = 10_000
    static let rounds = 3
    static let liveConnections = 100_000

    func testPerPacketCost() throws {
        let outPath = ProcessInfo.processInfo.environment["PPCTL_BENCH_BPF"] ?? ""
        try XCTSkipIf(outPath.isEmpty, "set PPCTL_BENCH_BPF=FILE (scripts/bench --bpf) to run")
        let lab = try PacketLab(attach: ["--max-conns", "400000"])
        defer { lab.close() }
        try lab.service("198.18.0.10:81 --proxy v2 --backend 198.18.2.2:8080")

        // The bare forwarder and the empty program.
        libbpf_set_print(nil)
        let bytes = Data(base64Encoded: TestBPFObjectBytes.forward)!
        let object: OpaquePointer = try bytes.withUnsafeBytes { raw in
            var opts = bpf_object_open_opts()
            opts.sz = MemoryLayout<bpf_object_open_opts>.size
            guard let o = bpf_object__open_mem(raw.baseAddress, raw.count, &opts), bpf_object__load(o) == 0 else {
                throw LabError.system("loading forward.bpf.o", errno)
            }
            return o
        }
        defer { bpf_object__close(object) }
        let forwarder = bpf_program__fd(bpf_object__find_program_by_name(object, "bench_forward"))
        let empty = bpf_program__fd(bpf_object__find_program_by_name(object, "bench_empty"))

        // One real connection, established through the program with its header acked.
        let c = PacketTests.Conn(cport: 20000, vport: 81)
        for (seg, side) in [
            (c.fromClient(TCPFlag.syn, seq: 1000), PacketLab.Side.client),
            (c.fromBackend(TCPFlag.syn | TCPFlag.ack, seq: 5000, ack: 1001), .backend),
            (c.fromClient(TCPFlag.ack, seq: 1001, ack: 5001), .client),
            (c.fromBackend(TCPFlag.ack, seq: 5001, ack: 1029), .backend)
        ] {
            XCTAssertEqual(try lab.run(seg.frame, from: side).action, TCAction.redirect.rawValue)
        }
        XCTAssertNotEqual((lab.entry(c.client, c.cport, c.vip, c.vport)?.state ?? 0) & UInt32(PPCTL_CT_HDR_ACKED), 0)

        let payload = [UInt8](repeating: 0x61, count: 64)
        let pa = TCPFlag.psh | TCPFlag.ack
        let ts: [UInt8] = [1, 1, 8, 10] + be32(1) + be32(2)
        let toBackend = c.fromClient(pa, seq: 1001, ack: 5001, payload, options: ts).frame
        let toClient = c.fromBackend(TCPFlag.ack, seq: 5001, ack: 1093, options: ts).frame
        var miss = c.fromClient(pa, seq: 1001, ack: 5001, payload, options: ts)
        miss.dport = 9999
        var direct = c.fromClient(pa, seq: 1001, ack: 5001, payload, options: ts)
        direct.dst = "198.18.2.2"
        var synPort: UInt16 = 1024

        func perCall(_ fd: Int32, _ frame: () -> [UInt8], _ ifindex: UInt32, _ n: Int, expect: TCAction) throws -> Double {
            var total: UInt64 = 0
            for _ in 0..<n {
                let r = try PacketLab.testRun(fd, frame(), ifindex: ifindex, repeat: 1)
                guard r.retval == UInt32(expect.rawValue) else {
                    throw LabError.system("verdict \(r.retval), not \(expect)", EINVAL)
                }
                total += UInt64(r.duration)
            }
            return Double(total) / Double(n)
        }
        func repeated(_ fd: Int32, _ frame: [UInt8], _ ifindex: UInt32) throws -> Double {
            Double(try PacketLab.testRun(fd, frame, ifindex: ifindex, repeat: 1_000_000).duration)
        }
        func median(_ f: () throws -> Double) rethrows -> Double {
            var v: [Double] = []
            for _ in 0..<PacketBenchmark.rounds { v.append(try f()) }
            return v.sorted()[v.count / 2]
        }
        let synClient = "198.18.5.2"
        let nextSyn: () -> [UInt8] = {
            synPort += 1
            var s = c.fromClient(TCPFlag.syn, seq: 1000, options: PacketTests.mss)
            s.src = synClient
            s.sport = synPort
            return s.frame
        }
        // Each SYN round starts from the same table: the connections it made go again.
        func synRound() throws -> Double {
            synPort = 1024
            let ns = try perCall(lab.programFD, nextSyn, lab.l0, PacketBenchmark.synCalls, expect: .redirect)
            for port in 1025...synPort {
                let key = PacketLab.key(synClient, port, c.vip, 81)
                guard let e = lab.maps.conntrack.lookup(key) else { continue }
                var reply = PacketLab.key(c.backend, 8080, c.snat, 0)
                reply.daddr = e.nat_saddr
                reply.dport = e.nat_sport
                try lab.maps.conntrack.delete(reply)
                try lab.maps.conntrack.delete(key)
            }
            return ns
        }

        typealias Row = (name: String, ns: [Double])
        var rows: [Row] = [
            ("miss (no service)", []), ("SYN (new connection)", []), ("established, client -> backend", []),
            ("established, backend -> client", []), ("bare forwarder", []), ("empty program", []),
            ("miss, repeat 1,000,000", []), ("bare forwarder, repeat 1,000,000", []),
            ("empty program, repeat 1,000,000", [])
        ]
        func measure() throws {
            var results: [Double] = []
            try FaultInjector.inNamespace(lab.lab.balancer) {
                let p = lab.programFD, l0 = lab.l0, l1 = lab.l1, n = PacketBenchmark.calls
                results = [
                    try median { try perCall(p, { miss.frame }, l0, n, expect: .ok) },
                    try median { try synRound() },
                    try median { try perCall(p, { toBackend }, l0, n, expect: .redirect) },
                    try median { try perCall(p, { toClient }, l1, n, expect: .redirect) },
                    try median { try perCall(forwarder, { direct.frame }, l0, n, expect: .redirect) },
                    try median { try perCall(empty, { direct.frame }, l0, n, expect: .ok) },
                    try median { try repeated(p, miss.frame, l0) },
                    try median { try repeated(forwarder, direct.frame, l0) },
                    try median { try repeated(empty, direct.frame, l0) }
                ]
            }
            for i in rows.indices { rows[i].ns.append(results[i]) }
        }

        var columns = ["1 service, empty table"]
        try measure()
        try fillConntrack(lab, PacketBenchmark.liveConnections)
        columns.append("1 service, 100,000 connections")
        try measure()
        try applyServices(lab, 9_999)
        columns.append("10,000 services, 100,000 connections")
        try measure()
        XCTAssertGreaterThanOrEqual(lab.maps.liveConnections(), PacketBenchmark.liveConnections)

        // The table: ns per packet, and the ratio to the bare forwarder (same method).
        var md = "| packet | " + columns.map { "\($0): ns | x fwd" }.joined(separator: " | ") + " |\n"
        md += "| --- |" + String(repeating: " ---: | ---: |", count: columns.count) + "\n"
        let fwd = rows[4].ns
        for r in rows {
            md +=
                "| \(r.name) | "
                + r.ns.enumerated().map { i, v in
                    String(format: "%.0f | %.2f", v, v / fwd[i])
                }.joined(separator: " | ") + " |\n"
        }
        print(md)
        try md.write(toFile: outPath, atomically: true, encoding: .utf8)
    }

    /// Writes `count` established connections (both entries) straight into the
    /// conntrack map: clients 198.18.64.0/18 -> VIP:80, backends 198.18.3.x:8080.
    private func fillConntrack(_ lab: PacketLab, _ count: Int) throws {
        let vip = PacketLab.addr("198.18.0.10"), snat = PacketLab.addr("198.18.2.1")
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        for i in 0..<count {
            let client = "198.18.\(64 + i / 64 / 256).\(i / 64 % 256)"
            let cport = UInt16(40000 + i % 64), sport = UInt16(1024 + i % 16384)
            let backend = "198.18.3.\(i / 16384)"
            var o = ppctl_ct_entry()
            o.nat_saddr = snat
            o.nat_daddr = PacketLab.addr(backend)
            o.nat_sport = sport.bigEndian
            o.nat_dport = UInt16(8080).bigEndian
            o.dir = UInt8(PPCTL_DIR_ORIGINAL)
            o.family = UInt8(PPCTL_FAMILY_IPV4)
            o.state = UInt32(PPCTL_CT_SYN_ACK_SEEN | PPCTL_CT_ESTABLISHED | PPCTL_CT_HDR_SENT | PPCTL_CT_HDR_ACKED)
            o.client_isn = 1000
            o.hdr_len = 28
            o.hdr_flags = UInt16(PPCTL_SVC_PROXY_V2)
            o.ifindex = lab.l1
            o.created_ns = UInt64(now.tv_sec) * 1_000_000_000 + UInt64(now.tv_nsec)
            o.last_seen_ns = o.created_ns  // established: idle for hours before the sweeper takes them
            var r = o
            r.nat_saddr = vip
            r.nat_daddr = PacketLab.addr(client)
            r.nat_sport = UInt16(80).bigEndian
            r.nat_dport = cport.bigEndian
            r.dir = UInt8(PPCTL_DIR_REPLY)
            r.ifindex = lab.l0
            try lab.maps.conntrack.update(PacketLab.key(client, cport, "198.18.0.10", 80), o)
            try lab.maps.conntrack.update(PacketLab.key(backend, 8080, "198.18.2.1", sport), r)
        }
    }

    /// `ppctl service apply` of `count` generated v2 services on 198.18.0.11.
    private func applyServices(_ lab: PacketLab, _ count: Int) throws {
        let path = NSTemporaryDirectory() + "ppctl-bench-\(getpid()).services"
        defer { unlink(path) }
        let lines = (1...count).map { "198.18.0.11:\($0) --proxy v2 --backend 198.18.2.2:8080" }
        try lines.joined(separator: "\n").write(toFile: path, atomically: true, encoding: .utf8)
        try lab.lab.ppctl(["service", "apply", path])
    }
}
