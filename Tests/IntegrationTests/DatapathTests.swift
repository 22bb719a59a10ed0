import ProxyProtocol
import XCTest

/// The tc datapath end to end: real client, balancer and backend namespaces, the
/// ppctl binary, and what the backend reads, byte for byte.
final class DatapathTests: XCTestCase {
    var lab: Lab!

    override func setUpWithError() throws {
        lab = try Lab()
        try lab.attach()
    }

    override func tearDown() {
        lab?.close()
        lab = nil
    }

    /// Adds 198.18.0.10:80 (PROXY v2) -> 198.18.2.2:8080 and :81 (plain) -> :8081.
    func addServices(proxyArgs: [String] = ["--proxyv2"]) throws {
        try lab.ppctl(["service", "add", "\(Lab.vip):80", "--backend", "\(Lab.backendAddress):8080"] + proxyArgs)
        try lab.ppctl(["service", "add", "\(Lab.vip):81", "--backend", "\(Lab.backendAddress):8081"])
    }

    func assertHeader(_ header: ProxyHeader, client: String, vip: String, file: StaticString = #filePath, line: UInt = #line) {
        guard case .ipv4(let s, let sp, let d, let dp, .stream) = header.addresses else {
            return XCTFail("not a TCP4 header: \(header)", file: file, line: line)
        }
        XCTAssertEqual("\(s):\(sp)", client, "source in the header is the client socket's address", file: file, line: line)
        XCTAssertEqual("\(d):\(dp)", vip, file: file, line: line)
    }

    // MARK: - The header

    func testHeaderCarriesClientAddressAndVIPClientFirst() throws {
        try addServices()
        let server = try TCP.listen(lab, in: lab.backend, on: "0.0.0.0", 8080)
        for i in 0..<5 {
            let accepted = Background { () throws -> (ProxyHeader, [UInt8], String) in
                let c = try server.accept()
                let (h, rest) = try c.readHeader()
                var body = rest
                while body.count < 6 { body += try c.read() }
                try c.write("pong \(i)\n")
                return (h, body, c.peerEndpoint)
            }
            let client = try TCP.connect(lab, from: lab.client, to: Lab.vip, 80)
            try client.write("ping \(i)\n")
            let (header, body, peer) = try accepted.wait()
            assertHeader(header, client: client.localEndpoint, vip: "\(Lab.vip):80")
            XCTAssertEqual(header.version, .v2)
            XCTAssertEqual(String(decoding: body, as: UTF8.self), "ping \(i)\n", "the client's bytes follow the header, once")
            XCTAssertTrue(peer.hasPrefix("198.18.2.1:"), "the backend's socket sees the balancer (full NAT), saw \(peer)")
            XCTAssertEqual(String(decoding: try client.read(), as: UTF8.self), "pong \(i)\n")
        }
        XCTAssertEqual(try lab.counter("headers_injected"), 5)
    }

    func testServerFirstProtocolGetsHeaderBeforeBanner() throws {
        try addServices()
        let server = try TCP.listen(lab, in: lab.backend, on: "0.0.0.0", 8080)
        let accepted = Background { () throws -> (ProxyHeader, [UInt8]) in
            let c = try server.accept()
            try c.write("220 smtp.example ESMTP\r\n")  // banner first, before reading anything
            let (h, rest) = try c.readHeader()
            var body = rest
            while !body.contains(0x0A) { body += try c.read() }
            try c.write("221 bye\r\n")
            return (h, body)
        }
        let client = try TCP.connect(lab, from: lab.client, to: Lab.vip, 80)
        XCTAssertEqual(String(decoding: try client.read(), as: UTF8.self), "220 smtp.example ESMTP\r\n")
        try client.write("QUIT\r\n")
        let (header, body) = try accepted.wait()
        assertHeader(header, client: client.localEndpoint, vip: "\(Lab.vip):80")
        XCTAssertEqual(String(decoding: body, as: UTF8.self), "QUIT\r\n")
        XCTAssertEqual(String(decoding: try client.read(), as: UTF8.self), "221 bye\r\n")
    }

    func testPlainServiceForwardsTheStreamUntouched() throws {
        try addServices()
        let server = try TCP.listen(lab, in: lab.backend, on: "0.0.0.0", 8081)
        let accepted = Background { () throws -> [UInt8] in
            let c = try server.accept()
            return try c.readExactly(5)
        }
        let client = try TCP.connect(lab, from: lab.client, to: Lab.vip, 81)
        try client.write("hello")
        XCTAssertEqual(try accepted.wait(), Array("hello".utf8), "no header on a plain service")
    }

    func testSNATAddressChosenByTheService() throws {
        try lab.exec(lab.balancer, ["ip", "addr", "add", "198.18.2.100/32", "dev", "l1"])
        try lab.ppctl([
            "service", "add", "\(Lab.vip):85", "--proxyv2", "--snat", "198.18.2.100",
            "--backend", "\(Lab.backendAddress):8085"
        ])
        let server = try TCP.listen(lab, in: lab.backend, on: "0.0.0.0", 8085)
        let accepted = Background { () throws -> (ProxyHeader, String) in
            let c = try server.accept()
            let (h, _) = try c.readHeader()
            try c.write("ok")
            return (h, c.peerEndpoint)
        }
        let client = try TCP.connect(lab, from: lab.client, to: Lab.vip, 85)
        let (header, peer) = try accepted.wait()
        XCTAssertTrue(peer.hasPrefix("198.18.2.100:"), "the backend sees the --snat address, saw \(peer)")
        assertHeader(header, client: client.localEndpoint, vip: "\(Lab.vip):85")
        XCTAssertEqual(try client.read(), Array("ok".utf8))
    }

    // MARK: - Checksums

    /// The datapath writes the TCP checksum of a translated segment itself, by what
    /// the skb's checksum field holds (CHECKSUM_PARTIAL: the pseudo-header sum only;
    /// otherwise the full sum). A veth receiver checks neither (a partial checksum
    /// is never checked, and veth marks the rest as verified), so a wrong one would
    /// pass every other test here and be dropped behind a real NIC: Scripts/
    /// checksum_capture.py checks each segment the backend and the client receive
    /// against the kind the kernel reports (PACKET_AUXDATA).
    func testTranslatedSegmentsCarryTheChecksumTheirSkbCalls() throws {
        try addServices()
        try exchangeAndCheckChecksums(expectPartial: true)
    }

    /// The same with checksum offload off on every interface: the senders sum whole
    /// segments, and the datapath's rewrite must keep the full sum right.
    func testTranslatedSegmentsKeepFullChecksumsWithOffloadOff() throws {
        try addServices()
        for (ns, dev) in [(lab.client, "c0"), (lab.balancer, "l0"), (lab.balancer, "l1"), (lab.backend, "b0")] {
            try lab.exec(ns, ["ethtool", "-K", dev, "tx", "off"])
        }
        try exchangeAndCheckChecksums(expectPartial: false)
    }

    /// Three request/response rounds through the PROXY v2 service, captured on the
    /// backend's and the client's interfaces (ChecksumCapture); every segment's
    /// checksum right, and of the kind expected (at least one).
    func exchangeAndCheckChecksums(expectPartial: Bool, file: StaticString = #filePath, line: UInt = #line) throws {
        let captures = [
            ("backend", try ChecksumCapture(lab, in: lab.backend, iface: "b0", port: 8080)),  // to_backend's rewrite
            ("client", try ChecksumCapture(lab, in: lab.client, iface: "c0", port: 80))  // to_client's
        ]
        let server = try TCP.listen(lab, in: lab.backend, on: "0.0.0.0", 8080)
        let accepted = Background { () throws -> Void in
            let c = try server.accept()
            var (_, body) = try c.readHeader()
            for i in 0..<3 {
                while body.count < 7 { body += try c.read() }
                body.removeFirst(7)
                try c.write("pong \(i)\n")
            }
        }
        let client = try TCP.connect(lab, from: lab.client, to: Lab.vip, 80)
        for i in 0..<3 {
            try client.write("ping \(i)\n")
            XCTAssertEqual(String(decoding: try client.read(), as: UTF8.self), "pong \(i)\n", file: file, line: line)
        }
        try accepted.wait()
        for (name, capture) in captures {
            let r = try capture.report()
            XCTAssertEqual(r.bad, [], "segments the \(name) received: \(r.text)", file: file, line: line)
            XCTAssertGreaterThanOrEqual(r.partial + r.full, 6, "the \(name) received the exchange: \(r.text)", file: file, line: line)
            XCTAssertGreaterThan(
                expectPartial ? r.partial : r.full, 0, "segments of the kind under test (\(r.text))", file: file, line: line)
        }
    }

    // MARK: - Byte-exact transfers

    func transfer(port: UInt16, backendPort: UInt16, size: Int, expectHeader: Bool) throws {
        let server = try TCP.listen(lab, in: lab.backend, on: "0.0.0.0", backendPort)
        let backend = Background { () throws -> (Int, Bool, ProxyHeader?) in
            let c = try server.accept()
            var header: ProxyHeader?
            var prefix: [UInt8] = []
            if expectHeader { (header, prefix) = try c.readHeader() }
            let sender = Background {
                try c.sendPattern(seed: 2, total: size)
                c.shutdownWrite()
            }
            let (n, ok) = try c.receivePattern(seed: 1, prefix: prefix)
            try sender.wait(timeout: 120)
            return (n, ok, header)
        }
        let client = try TCP.connect(lab, from: lab.client, to: Lab.vip, port, timeout: 60)
        let sender = Background {
            try client.sendPattern(seed: 1, total: size)
            client.shutdownWrite()
        }
        let (received, intact) = try client.receivePattern(seed: 2)
        try sender.wait(timeout: 120)
        let (backendReceived, backendIntact, header) = try backend.wait(timeout: 120)
        XCTAssertEqual(received, size, "client received every byte")
        XCTAssertTrue(intact, "client's bytes are the backend's, in order")
        XCTAssertEqual(backendReceived, size, "backend received every byte")
        XCTAssertTrue(backendIntact, "backend's bytes are the client's, in order")
        if expectHeader, let header { assertHeader(header, client: client.localEndpoint, vip: "\(Lab.vip):\(port)") }
    }

    /// Past 2 GiB the client's sequence numbers are more than 2^31 from its ISN, where
    /// serial arithmetic can no longer tell "before ISN+1" from "after": translation
    /// must go on regardless. (It did not: seq stopped moving and acks stopped being
    /// translated at 2^31 bytes, and the stream stalled.)
    func testStreamPastTwoGiBStaysTranslatedAndByteExact() throws {
        try addServices()
        let size = (1 << 31) + (256 << 20)
        let server = try TCP.listen(lab, in: lab.backend, on: "0.0.0.0", 8080)
        let backend = Background { () throws -> (Int, Bool) in
            let c = try server.accept()
            let (_, prefix) = try c.readHeader()
            return try c.receivePattern(seed: 1, prefix: prefix)
        }
        let client = try TCP.connect(lab, from: lab.client, to: Lab.vip, 80, timeout: 60)
        try client.sendPattern(seed: 1, total: size)
        client.shutdownWrite()
        let (received, intact) = try backend.wait(timeout: 300)
        XCTAssertEqual(received, size, "the backend received every byte")
        XCTAssertTrue(intact, "in order, with nothing lost or repeated at the 2^31 mark")
    }

    func testTransfer64MiBBothWaysThroughProxyAndPlainServices() throws {
        try addServices()
        try transfer(port: 80, backendPort: 8080, size: 64 << 20, expectHeader: true)
        try transfer(port: 81, backendPort: 8081, size: 64 << 20, expectHeader: false)
    }

    func testTimestampsOffAndChecksumOffloadOff() throws {
        try addServices()
        for (ns, dev) in [(lab.client, "c0"), (lab.balancer, "l0"), (lab.balancer, "l1"), (lab.backend, "b0")] {
            try lab.exec(ns, ["ethtool", "-K", dev, "tx", "off"])
        }
        for ns in [lab.client, lab.backend] {
            try lab.exec(ns, ["sysctl", "-qw", "net.ipv4.tcp_timestamps=0", "net.ipv4.tcp_sack=0"])
        }
        try transfer(port: 80, backendPort: 8080, size: 16 << 20, expectHeader: true)
        try transfer(port: 81, backendPort: 8081, size: 4 << 20, expectHeader: false)
    }

    func testIPOptionsOnTheClientsPackets() throws {
        try addServices()
        let server = try TCP.listen(lab, in: lab.backend, on: "0.0.0.0", 8080)
        let accepted = Background { () throws -> (ProxyHeader, [UInt8]) in
            let c = try server.accept()
            let (h, rest) = try c.readHeader()
            var body = rest
            while body.count < 4 { body += try c.read() }
            return (h, body)
        }
        // Four NOPs and an end-of-options: every packet carries a 24-byte IP header.
        let client = try TCP.connect(lab, from: lab.client, to: Lab.vip, 80) { fd in
            var options: [UInt8] = [1, 1, 1, 0]
            setsockopt(fd, Int32(IPPROTO_IP), IP_OPTIONS, &options, 4)
        }
        try client.write("data")
        let (header, body) = try accepted.wait()
        assertHeader(header, client: client.localEndpoint, vip: "\(Lab.vip):80")
        XCTAssertEqual(body, Array("data".utf8))
    }

    // MARK: - Many connections

    func testThousandSequentialAndTwoHundredConcurrentConnectionsEachGetTheirOwnHeader() throws {
        try addServices()
        let server = try TCP.listen(lab, in: lab.backend, on: "0.0.0.0", 8080)
        // The backend echoes the header's source back; the client checks it is itself.
        let total = 1000 + 200
        let backend = Background { () throws -> Int in
            var served = 0
            for _ in 0..<total {
                let c = try server.accept()
                let (h, _) = try c.readHeader()
                guard case .ipv4(let s, let sp, _, _, _) = h.addresses else { continue }
                try c.write("\(s):\(sp)\n")
                served += 1
            }
            return served
        }
        var mismatches = 0
        for _ in 0..<1000 {
            let c = try TCP.connect(lab, from: lab.client, to: Lab.vip, 80)
            let answer = String(decoding: try c.read(), as: UTF8.self)
            if answer != c.localEndpoint + "\n" { mismatches += 1 }
        }
        var open: [TCP] = []
        for _ in 0..<200 { open.append(try TCP.connect(lab, from: lab.client, to: Lab.vip, 80)) }
        for c in open {
            let answer = String(decoding: try c.read(), as: UTF8.self)
            if answer != c.localEndpoint + "\n" { mismatches += 1 }
        }
        XCTAssertEqual(try backend.wait(timeout: 120), total)
        XCTAssertEqual(mismatches, 0, "every connection's header names that connection's client")
    }

    // MARK: - Cleanliness

    func testDeletingServiceAndDetachingLeaveNothingBehind() throws {
        try addServices()
        try lab.ppctl(["service", "delete", "\(Lab.vip):80"])
        XCTAssertFalse(try lab.ppctl(["service", "list"]).stdout.contains(":80 "))
        let shown = try lab.exec(lab.balancer, ["tc", "filter", "show", "dev", "l0", "ingress"]).stdout
        let ids = shown.split(separator: " ").enumerated().compactMap { i, w -> String? in
            w == "id" ? String(shown.split(separator: " ")[i + 1]) : nil
        }
        XCTAssertFalse(ids.isEmpty, "the program is attached before detach: \(shown)")
        try lab.ppctl(["detach"])
        for dev in ["l0", "l1"] {
            let filters = try lab.exec(lab.balancer, ["tc", "filter", "show", "dev", dev, "ingress"]).stdout
            XCTAssertFalse(filters.contains("ppctl"), "no filter left on \(dev): \(filters)")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: lab.pinRoot + "/" + lab.balancer), "pins removed")
        for id in ids {
            var alive = true
            for _ in 0..<30 where alive {
                alive = try lab.run(["/usr/sbin/bpftool", "prog", "show", "id", id], check: false).status == 0
                if alive { usleep(100_000) }
            }
            XCTAssertFalse(alive, "program \(id) is freed after detach")
        }
    }
}
