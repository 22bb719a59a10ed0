import CLibbpf
import Datapath
import DatapathABI
import Foundation
import XCTest

/// Runs ppctl's tc program on hand-built frames with BPF_PROG_TEST_RUN, the way
/// Katran's BpfTester does: a lab (namespaces, veths) with `ppctl attach` on the
/// balancer's l0 and l1, the attached ppctl_tc_ingress found with bpf_tc_query, its
/// pinned maps opened, and each frame run as if it had arrived on l0 (from the
/// client) or l1 (from the backend). Nothing is sent: the program's verdict and the
/// frame it leaves are returned.
///
/// The balancer's interfaces and neighbours get the fixed MACs of `MAC`, so that
/// expected frames can be written down. Test runs happen on a thread inside the
/// balancer's namespace (the kernel resolves the ifindex of the context there, and
/// bpf_fib_lookup routes with that namespace's tables).
final class PacketLab {
    enum Side { case client, backend }

    let lab: Lab
    let maps: Maps
    private(set) var programFD: Int32
    let l0: UInt32, l1: UInt32

    /// The verdict and the frame the program left.
    struct Outcome {
        var action: Int32
        var frame: [UInt8]
    }

    init(attach extra: [String] = []) throws {
        lab = try Lab()
        try lab.attach(extra)
        let b = lab.balancer
        try lab.sh(
            """
            ip -n \(b) link set l0 address \(mac(MAC.l0)) && ip -n \(b) link set l1 address \(mac(MAC.l1)) &&
            ip -n \(b) neigh replace 198.18.2.2 lladdr \(mac(MAC.backend)) dev l1 nud permanent &&
            ip -n \(b) neigh replace 198.18.2.3 lladdr \(mac(MAC.backend)) dev l1 nud permanent &&
            ip -n \(b) neigh replace 2001:2:0:2::2 lladdr \(mac(MAC.backend)) dev l1 nud permanent
            """)
        maps = try Maps(Instance(netns: b, pinRoot: lab.pinRoot))
        var indexes: (UInt32, UInt32, Int32) = (0, 0, -1)
        try FaultInjector.inNamespace(b) {
            let i0 = if_nametoindex("l0"), i1 = if_nametoindex("l1")
            var hook = bpf_tc_hook()
            hook.sz = MemoryLayout<bpf_tc_hook>.size
            hook.ifindex = Int32(i0)
            hook.attach_point = BPF_TC_INGRESS
            var opts = bpf_tc_opts()
            opts.sz = MemoryLayout<bpf_tc_opts>.size
            opts.handle = Loader.filterHandle
            opts.priority = Loader.filterPriority
            let rc = bpf_tc_query(&hook, &opts)
            guard rc == 0 else { throw LabError.system("bpf_tc_query on l0", -rc) }
            let fd = bpf_prog_get_fd_by_id(opts.prog_id)
            guard fd >= 0 else { throw LabError.system("opening program \(opts.prog_id)", errno) }
            indexes = (i0, i1, fd)
        }
        (l0, l1, programFD) = indexes
    }

    /// Closes the program and removes the lab (namespaces, pins). Safe to call twice.
    func close() {
        if programFD >= 0 { Glibc.close(programFD) }
        programFD = -1
        lab.close()
    }

    deinit { close() }

    /// `ppctl service add ARGS`.
    func service(_ args: String) throws {
        try lab.ppctl(["service", "add"] + args.split(separator: " ").map(String.init))
    }

    // MARK: - Running the program

    /// Runs `program` (default: ppctl's) once on `frame` as received on `side`'s
    /// interface.
    func run(_ frame: [UInt8], from side: Side, program: Int32? = nil) throws -> Outcome {
        let ifindex = side == .client ? l0 : l1
        let fd = program ?? programFD
        var outcome = Outcome(action: -1, frame: [])
        try FaultInjector.inNamespace(lab.balancer) {
            let r = try PacketLab.testRun(fd, frame, ifindex: ifindex, repeat: 1)
            outcome = Outcome(action: Int32(bitPattern: r.retval), frame: r.out)
        }
        return outcome
    }

    /// BPF_PROG_TEST_RUN of `fd` on `frame` with a context whose ifindex and
    /// ingress_ifindex are `ifindex`. The caller is in the balancer's namespace.
    static func testRun(_ fd: Int32, _ frame: [UInt8], ifindex: UInt32, repeat count: Int32)
        throws -> (retval: UInt32, out: [UInt8], duration: UInt32)
    {
        var ctx = __sk_buff()
        ctx.ifindex = ifindex
        ctx.ingress_ifindex = ifindex
        var input = frame
        var output = [UInt8](repeating: 0, count: 4096)
        var opts = bpf_test_run_opts()
        let rc: Int32 = input.withUnsafeMutableBytes { inp in
            output.withUnsafeMutableBytes { outp in
                withUnsafeMutablePointer(to: &ctx) { ctxp in
                    opts.sz = MemoryLayout<bpf_test_run_opts>.size
                    opts.data_in = UnsafeRawPointer(inp.baseAddress)
                    opts.data_size_in = UInt32(inp.count)
                    opts.data_out = outp.baseAddress
                    opts.data_size_out = UInt32(outp.count)
                    opts.ctx_in = UnsafeRawPointer(ctxp)
                    opts.ctx_size_in = UInt32(MemoryLayout<__sk_buff>.size)
                    opts.repeat = count
                    return bpf_prog_test_run_opts(fd, &opts)
                }
            }
        }
        guard rc == 0 else { throw LabError.system("BPF_PROG_TEST_RUN", -rc) }
        return (opts.retval, Array(output.prefix(Int(opts.data_size_out))), opts.duration)
    }

    // MARK: - Fixtures

    /// Runs `input` and checks the verdict and, byte for byte, the frame left
    /// (`expected` nil: the input unchanged); then checks the checksums of what came
    /// out with an independent computation.
    @discardableResult
    func check(
        _ input: Segment, from side: Side, action: TCAction, expected: Segment?,
        _ what: String, file: StaticString = #filePath, line: UInt = #line
    ) throws -> Outcome {
        try check(input.frame, from: side, action: action, expected: (expected ?? input).frame, what, file: file, line: line)
    }

    @discardableResult
    func check(
        _ input: [UInt8], from side: Side, action: TCAction, expected: [UInt8]?,
        _ what: String, file: StaticString = #filePath, line: UInt = #line
    ) throws -> Outcome {
        let out = try run(input, from: side)
        XCTAssertEqual(out.action, action.rawValue, "\(what): verdict \(out.action), not \(action)", file: file, line: line)
        let want = expected ?? input
        if out.frame != want {
            XCTFail("\(what): frame differs\n got:  \(hex(out.frame))\n want: \(hex(want))", file: file, line: line)
        }
        if expected != nil, let parsed = ParsedFrame(out.frame) {
            XCTAssertTrue(parsed.ipChecksumOK, "\(what): IPv4 header checksum", file: file, line: line)
            XCTAssertTrue(parsed.tcpChecksumOK, "\(what): TCP checksum", file: file, line: line)
        }
        return out
    }

    // MARK: - Map state

    /// A conntrack key for a tuple written as text.
    static func key(_ src: String, _ sport: UInt16, _ dst: String, _ dport: UInt16) -> ppctl_ct_key {
        var k = ppctl_ct_key()
        k.saddr = addr(src)
        k.daddr = addr(dst)
        k.sport = sport.bigEndian
        k.dport = dport.bigEndian
        k.family = UInt8(src.contains(":") ? PPCTL_FAMILY_IPV6 : PPCTL_FAMILY_IPV4)
        k.proto = UInt8(PPCTL_PROTO_TCP)
        return k
    }

    static func addr(_ text: String) -> ppctl_addr {
        var a = ppctl_addr()
        withUnsafeMutableBytes(of: &a) { $0.copyBytes(from: ipBytes(text)) }
        return a
    }

    func entry(_ src: String, _ sport: UInt16, _ dst: String, _ dport: UInt16) -> ppctl_ct_entry? {
        maps.conntrack.lookup(PacketLab.key(src, sport, dst, dport))
    }

    func stats() throws -> ppctl_stats { try maps.totals() }
}

func mac(_ b: [UInt8]) -> String { b.map { String(format: "%02x", $0) }.joined(separator: ":") }
