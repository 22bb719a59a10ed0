import FaultABI
import ProxyProtocol
import XCTest

/// Loss, duplication, port reuse, TFO, a full table and upgrades under traffic. Each
/// case checks byte-exact data both ways and the header exactly once, first; the time
/// each connection took (the recovery) is printed as `recovery <case>: <seconds>`.
final class LossTests: XCTestCase {
    var lab: Lab!
    static let SYN: UInt8 = 0x02, ACK: UInt8 = 0x10, FIN: UInt8 = 0x01, RST: UInt8 = 0x04, PSH: UInt8 = 0x08

    override func setUpWithError() throws {
        lab = try Lab()
        try lab.attach()
        try lab.ppctl(["service", "add", "\(Lab.vip):80", "--proxyv2", "--backend", "\(Lab.backendAddress):8080"])
    }

    override func tearDown() {
        lab?.close()
        lab = nil
    }

    /// One connection through the PROXY service: (server-first: a banner first), then
    /// `size` bytes each way. Asserts the header and the bytes; returns the seconds it took.
    @discardableResult
    func exchange(
        _ name: String, serverFirst: Bool, size: Int = 256 << 10,
        file: StaticString = #filePath, line: UInt = #line
    ) throws -> Double {
        let server = try TCP.listen(lab, in: lab.backend, on: "0.0.0.0", 8080)
        // Stop listening on return, whatever still holds the socket (the accepting
        // thread may release it a moment later): the next exchange listens again.
        defer { shutdown(server.fd, Int32(SHUT_RDWR)) }
        let start = Date()
        let backend = Background { () throws -> (ProxyHeader, Int, Bool) in
            let c = try server.accept()
            if serverFirst { try c.write("220 ready\r\n") }
            let (h, prefix) = try c.readHeader()
            let sender = Background {
                try c.sendPattern(seed: 4, total: size)
                c.shutdownWrite()
            }
            let (n, ok) = try c.receivePattern(seed: 3, prefix: prefix)
            try sender.wait(timeout: 60)
            return (h, n, ok)
        }
        let client = try TCP.connect(lab, from: lab.client, to: Lab.vip, 80, timeout: 30)
        if serverFirst {
            XCTAssertEqual(String(decoding: try client.readExactly(11), as: UTF8.self), "220 ready\r\n", file: file, line: line)
        }
        let sender = Background {
            try client.sendPattern(seed: 3, total: size)
            client.shutdownWrite()
        }
        let (received, intact) = try client.receivePattern(seed: 4, prefix: [])
        try sender.wait(timeout: 60)
        let (header, backendReceived, backendIntact) = try backend.wait(timeout: 60)
        let seconds = Date().timeIntervalSince(start)
        print("recovery \(name) \(serverFirst ? "server-first" : "client-first"): \(String(format: "%.3f", seconds)) s")
        guard case .ipv4(let s, let sp, _, _, _) = header.addresses else {
            XCTFail("no TCP4 header", file: file, line: line)
            return seconds
        }
        XCTAssertEqual("\(s):\(sp)", client.localEndpoint, "the header names the client", file: file, line: line)
        XCTAssertEqual(received, size, "client got every byte", file: file, line: line)
        XCTAssertTrue(intact, "client's stream is exact", file: file, line: line)
        XCTAssertEqual(backendReceived, size, "backend got every byte after exactly one header", file: file, line: line)
        XCTAssertTrue(backendIntact, "backend's stream is exact (the header appears once)", file: file, line: line)
        return seconds
    }

    func both(_ name: String, setup: () throws -> FaultInjector) throws {
        for serverFirst in [false, true] {
            let injector = try setup()
            try exchange(name, serverFirst: serverFirst)
            XCTAssertGreaterThan(injector.counters(0).applied, 0, "the fault happened (\(name))")
        }
    }

    // MARK: - Loss

    func testHeaderSurvivesLossOfItsSegmentAfterTheBalancer() throws {
        try both("header-segment-lost") {
            let f = try FaultInjector(ns: lab.backend, iface: "b0", hook: .ingress)
            try f.set(0, .init(destinationPort: 8080, payload: FAULT_PAYLOAD_SOME, action: FAULT_DROP))
            return f
        }
    }

    func testHeaderSurvivesLossOfTheHandshakeACKBeforeTheBalancer() throws {
        try both("handshake-ack-lost") {
            let f = try FaultInjector(ns: lab.client, iface: "c0", hook: .egress)
            try f.set(
                0,
                .init(
                    destinationPort: 80, flagsMask: Self.SYN | Self.ACK | Self.FIN | Self.RST, flagsValue: Self.ACK,
                    payload: FAULT_PAYLOAD_NONE, action: FAULT_DROP))
            return f
        }
    }

    func testClientsFirstDataSegmentLost() throws {
        try both("first-data-lost") {
            let f = try FaultInjector(ns: lab.client, iface: "c0", hook: .egress)
            try f.set(0, .init(destinationPort: 80, payload: FAULT_PAYLOAD_SOME, action: FAULT_DROP))
            return f
        }
    }

    // The 100th data segment: 16 MiB can cross veth in as few as 256 GSO segments of
    // 64 KiB, so a later one may never come.
    func testSegmentLostInTheMiddleOf16MiBWithSACK() throws {
        let f = try FaultInjector(ns: lab.backend, iface: "b0", hook: .ingress)
        try f.set(0, .init(destinationPort: 8080, payload: FAULT_PAYLOAD_SOME, action: FAULT_DROP, nth: 100))
        let g = try FaultInjector(ns: lab.client, iface: "c0", hook: .ingress)
        try g.set(0, .init(sourcePort: 80, payload: FAULT_PAYLOAD_SOME, action: FAULT_DROP, nth: 100))
        try exchange("middle-lost-sack", serverFirst: false, size: 16 << 20)
        XCTAssertEqual(f.counters(0).applied, 1)
        XCTAssertEqual(g.counters(0).applied, 1)
    }

    func testSegmentLostInTheMiddleOf16MiBWithoutSACK() throws {
        for ns in [lab.client, lab.backend] { try lab.exec(ns, ["sysctl", "-qw", "net.ipv4.tcp_sack=0"]) }
        let f = try FaultInjector(ns: lab.backend, iface: "b0", hook: .ingress)
        try f.set(0, .init(destinationPort: 8080, payload: FAULT_PAYLOAD_SOME, action: FAULT_DROP, nth: 100))
        try exchange("middle-lost-nosack", serverFirst: false, size: 16 << 20)
        XCTAssertEqual(f.counters(0).applied, 1)
    }

    func testBackendsSYNACKLost() throws {
        try both("syn-ack-lost") {
            let f = try FaultInjector(ns: lab.backend, iface: "b0", hook: .egress)
            try f.set(0, .init(sourcePort: 8080, flagsMask: Self.SYN | Self.ACK, flagsValue: Self.SYN | Self.ACK, action: FAULT_DROP))
            return f
        }
    }

    func testBackendsPureACKLost() throws {
        try both("backend-ack-lost") {
            let f = try FaultInjector(ns: lab.backend, iface: "b0", hook: .egress)
            try f.set(
                0,
                .init(
                    sourcePort: 8080, flagsMask: Self.SYN | Self.FIN | Self.RST, flagsValue: 0,
                    payload: FAULT_PAYLOAD_NONE, action: FAULT_DROP, nth: 2))
            return f
        }
    }

    // MARK: - Duplicates

    func testDuplicatedSegmentsInEachDirection() throws {
        try both("duplicates") {
            let f = try FaultInjector(ns: lab.backend, iface: "b0", hook: .ingress)
            try f.set(0, .init(destinationPort: 8080, action: FAULT_DUPLICATE, nth: 1, times: 20))
            let g = try FaultInjector(ns: lab.client, iface: "c0", hook: .ingress)
            try g.set(0, .init(sourcePort: 80, action: FAULT_DUPLICATE, nth: 1, times: 20))
            keep.append(g)
            return f
        }
    }
    private var keep: [FaultInjector] = []

    // MARK: - Reuse, TFO, a full table

    func testClientReusingItsPortAfterAResetGetsAFreshHeader() throws {
        let server = try TCP.listen(lab, in: lab.backend, on: "0.0.0.0", 8080)
        var ports: [String] = []
        for round in 0..<2 {
            let backend = Background { () throws -> (ProxyHeader, [UInt8]) in
                let c = try server.accept()
                let (h, rest) = try c.readHeader()
                var body = rest
                while body.count < 7 { body += try c.read() }
                try c.write("ok")
                return (h, body)
            }
            let client = try TCP.connect(lab, from: lab.client, to: Lab.vip, 80) { fd in
                var one: Int32 = 1
                setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, 4)
                var (addr, len) = TCP.sockaddr("198.18.1.2", 40_123)
                _ = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) } }
            }
            try client.write("round \(round)")
            let (header, body) = try backend.wait()
            XCTAssertEqual(String(decoding: body, as: UTF8.self), "round \(round)", "exactly one header, then the data")
            guard case .ipv4(_, let sp, _, _, _) = header.addresses else { return XCTFail() }
            XCTAssertEqual(sp, 40_123)
            ports.append(client.localEndpoint)
            XCTAssertEqual(try client.read(), Array("ok".utf8))
            var linger = linger(l_onoff: 1, l_linger: 0)  // close with a RST
            setsockopt(client.fd, SOL_SOCKET, SO_LINGER, &linger, socklen_t(MemoryLayout<linger>.size))
        }
        XCTAssertEqual(ports[0], ports[1])
    }

    func testTCPFastOpenFromTheClientStillPutsTheHeaderFirst() throws {
        try lab.exec(lab.client, ["sysctl", "-qw", "net.ipv4.tcp_fastopen=1"])
        try lab.exec(lab.backend, ["sysctl", "-qw", "net.ipv4.tcp_fastopen=3"])
        let server = try TCP.listen(lab, in: lab.backend, on: "0.0.0.0", 8080) { fd in
            var qlen: Int32 = 16
            setsockopt(fd, Int32(IPPROTO_TCP), TCP_FASTOPEN, &qlen, 4)
        }
        for i in 0..<3 {
            let message = Array("tfo \(i) ok".utf8)
            let backend = Background { () throws -> (ProxyHeader, [UInt8]) in
                let c = try server.accept()
                let (h, rest) = try c.readHeader()
                var body = rest
                while body.count < message.count { body += try c.read() }
                try c.write("ok")
                return (h, body)
            }
            let fd = try lab.socket(in: lab.client)
            let client = TCP(fd: fd)
            var (addr, len) = TCP.sockaddr(Lab.vip, 80)
            let sent = withUnsafePointer(to: &addr) { a in
                a.withMemoryRebound(to: sockaddr.self, capacity: 1) { sendto(fd, message, message.count, Int32(MSG_FASTOPEN), $0, len) }
            }
            XCTAssertEqual(sent, message.count)
            let (header, body) = try backend.wait()
            XCTAssertEqual(body, message, "data sent on the SYN arrives after the header, once (connection \(i))")
            guard case .ipv4(let s, let sp, _, _, _) = header.addresses else { return XCTFail() }
            XCTAssertEqual("\(s):\(sp)", client.localEndpoint)
            XCTAssertEqual(try client.read(), Array("ok".utf8))
        }
        XCTAssertGreaterThan(try lab.counter("tfo_trimmed"), 0, "the SYN's data was trimmed by the datapath")
    }

    func testFullConnectionTableRefusesNewConnectionsAndKeepsOldOnes() throws {
        try lab.ppctl(["detach"])
        try lab.attach(["--max-conns", "16"])
        try lab.ppctl(["service", "add", "\(Lab.vip):80", "--proxyv2", "--backend", "\(Lab.backendAddress):8080"])
        let server = try TCP.listen(lab, in: lab.backend, on: "0.0.0.0", 8080)
        let accepted = Background { () throws -> [TCP] in try (0..<16).map { _ in try server.accept() } }
        let clients = try (0..<16).map { _ in try TCP.connect(lab, from: lab.client, to: Lab.vip, 80) }
        let backends = try accepted.wait()
        // The 17th: its SYN is dropped; connect gives up.
        XCTAssertThrowsError(
            try TCP.connect(lab, from: lab.client, to: Lab.vip, 80, timeout: 2) { fd in
                var tv = timeval(tv_sec: 2, tv_usec: 0)
                setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
            })
        for (i, (c, b)) in zip(clients, backends).enumerated() {
            try c.write("still here \(i)")
            let (h, rest) = try b.readHeader()
            var body = rest
            while body.count < "still here \(i)".utf8.count { body += try b.read() }
            XCTAssertEqual(String(decoding: body, as: UTF8.self), "still here \(i)")
            guard case .ipv4(let s, let sp, _, _, _) = h.addresses else { return XCTFail() }
            XCTAssertEqual("\(s):\(sp)", c.localEndpoint)
        }
        XCTAssertGreaterThan(try lab.counter("refused_table_full"), 0)
    }

    // MARK: - Changes under traffic

    func testUpgradeAndBackendDeleteDuringALongTransfer() throws {
        try lab.ppctl(["backend", "add", "\(Lab.vip):80", "\(Lab.backendAddress2):9090"])
        // Only 198.18.2.2:8080 listens; choose a client port that the ring sends there.
        let server = try TCP.listen(lab, in: lab.backend, on: Lab.backendAddress, 8080)
        try lab.ppctl(["backend", "delete", "\(Lab.vip):80", "\(Lab.backendAddress2):9090"])
        try lab.ppctl(["backend", "add", "\(Lab.vip):80", "\(Lab.backendAddress2):9090,weight=1"])
        let size = 64 << 20
        var done = false
        for _ in 0..<8 where !done {
            // Connect first: a connection the ring sent to the silent backend fails, and
            // an accept already waiting would take the next attempt's connection.
            guard let client = try? TCP.connect(lab, from: lab.client, to: Lab.vip, 80, timeout: 3) else { continue }
            let backend = Background { () throws -> (Int, Bool) in
                let c = try server.accept()
                let (_, prefix) = try c.readHeader()
                let sender = Background {
                    try c.sendPattern(seed: 6, total: size)
                    c.shutdownWrite()
                }
                let r = try c.receivePattern(seed: 5, prefix: prefix)
                try sender.wait(timeout: 120)
                return r
            }
            let sender = Background {
                try client.sendPattern(seed: 5, total: size)
                client.shutdownWrite()
            }
            usleep(50_000)
            try lab.attach()  // upgrade in place
            try lab.ppctl(["backend", "delete", "\(Lab.vip):80", "\(Lab.backendAddress2):9090"])
            let (received, intact) = try client.receivePattern(seed: 6)
            try sender.wait(timeout: 120)
            let (backendReceived, backendIntact) = try backend.wait(timeout: 120)
            XCTAssertEqual(received, size)
            XCTAssertTrue(intact)
            XCTAssertEqual(backendReceived, size)
            XCTAssertTrue(backendIntact)
            done = true
        }
        XCTAssertTrue(done, "a connection reached the listening backend")
    }
}
