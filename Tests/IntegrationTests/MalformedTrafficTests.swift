import FaultABI
import XCTest

/// Hand-made frames to the VIP (raw sockets in the client namespace): truncated and
/// inconsistent headers, IP options, fragments, every TCP flag combination, and a
/// flood of spoofed SYNs. Nothing malformed reaches the backend, state stays bounded,
/// and a real connection works during and after.
final class MalformedTrafficTests: XCTestCase {
    var lab: Lab!

    override func setUpWithError() throws {
        lab = try Lab()
        try lab.attach()
        try lab.ppctl(["service", "add", "\(Lab.vip):80", "--proxyv2", "--backend", "\(Lab.backendAddress):8080"])
    }

    override func tearDown() {
        lab?.close()
        lab = nil
    }

    /// Sends frames built by a small Python program over AF_PACKET on c0.
    func send(_ kind: String, count: Int = 0) throws {
        let mac = try lab.exec(lab.balancer, ["cat", "/sys/class/net/l0/address"]).stdout
            .trimmingCharacters(in: .whitespacesAndNewlines)
        try lab.exec(lab.client, ["python3", Self.frames, kind, mac, Lab.vip, "\(count)"])
    }

    func testMalformedPacketsAreNeverForwardedAndConnectionsStillWork() throws {
        let counter = try FaultInjector(ns: lab.backend, iface: "b0", hook: .ingress)
        // Rule 0: segments that may legitimately start a connection; rule 1: all of them.
        try counter.set(0, .init(destinationPort: 8080, flagsMask: 0x17, flagsValue: 0x02, action: FAULT_COUNT))
        try counter.set(1, .init(destinationPort: 8080, action: FAULT_COUNT))
        try send("malformed")
        usleep(300_000)
        let (syns, _) = counter.counters(0)
        let (all, _) = counter.counters(1)
        XCTAssertGreaterThan(syns, 0, "the well-formed SYN flag combinations did open connections")
        XCTAssertEqual(all, syns, "only SYNs (which open a connection) reached the backend: \(all) packets, \(syns) SYNs")
        let stats = try lab.counters()
        XCTAssertEqual(stats["fwd_errors"], 0, "\(stats)")
        XCTAssertGreaterThan(
            stats["passed_unparsed"] ?? 0, 0, "malformed packets and fragments were seen and passed on untouched: \(stats)")
        try assertARealConnectionWorks()
    }

    func testSpoofedSYNFloodStaysBoundedAndRealConnectionsWork() throws {
        let flood = Background { try self.send("synflood", count: 100_000) }
        usleep(200_000)
        try assertARealConnectionWorks()  // during
        try flood.wait(timeout: 120)
        try assertARealConnectionWorks()  // after
        let live = try lab.counter("live_connections")
        XCTAssertGreaterThan(live, 0)
        XCTAssertLessThanOrEqual(live, 131_072, "the table is bounded by --max-conns")
        print("syn flood: \(live) live entries after 100,000 spoofed SYNs")
    }

    func assertARealConnectionWorks() throws {
        let server = try TCP.listen(lab, in: lab.backend, on: "0.0.0.0", 8080)
        let backend = Background { () throws -> String in
            let c = try server.accept()
            let (h, _) = try c.readHeader()
            guard case .ipv4(let s, let sp, _, _, _) = h.addresses else { return "" }
            try c.write("ok")
            return "\(s):\(sp)"
        }
        let client = try TCP.connect(lab, from: lab.client, to: Lab.vip, 80)
        XCTAssertEqual(try backend.wait(), client.localEndpoint)
        XCTAssertEqual(try client.read(), Array("ok".utf8))
    }

    /// Scripts/malformed_frames.py: `KIND MAC VIP COUNT`, frames sent over AF_PACKET.
    static let frames = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("Scripts/malformed_frames.py").path
}
