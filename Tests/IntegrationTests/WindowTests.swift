import FaultABI
import ProxyProtocol
import XCTest

/// Segments outside the connection's window (issues 17 and 18): resets, acks and SACK
/// blocks that no peer of the connection could have sent at that moment, made with
/// scapy on a live connection's tuple. The balancer must judge them as the endpoints
/// do: a reset outside the window does not end the connection, an ack before the
/// SYN-ACK does not acknowledge the header, and a SYN after a real reset starts over.
final class WindowTests: XCTestCase {
    var lab: Lab!
    static let SYN: UInt8 = 0x02, ACK: UInt8 = 0x10, RST: UInt8 = 0x04
    static let clientAddress = "198.18.1.2"

    override func setUpWithError() throws {
        lab = try Lab()
        try lab.attach()
        try lab.ppctl(["service", "add", "\(Lab.vip):80", "--proxyv2", "--backend", "\(Lab.backendAddress):8080"])
    }

    override func tearDown() {
        lab?.close()
        lab = nil
    }

    // MARK: - Resets

    func testSpoofedResetWithWrongSequenceLeavesConnectionAlive() throws {
        let (client, backend) = try connectAndSendABC()
        // 12345 lies outside the window unless the client's ISN happens to be within
        // a window's width below it (a chance of about 1 in 65,000).
        try lab.scapy(
            in: lab.client,
            """
            send(IP(src='\(Self.clientAddress)', dst='\(Lab.vip)') / TCP(sport=\(port(client)), dport=80, flags='R', seq=12345))
            """)
        usleep(200_000)
        let state = try lab.connection(from: client.localEndpoint)?.state
        XCTAssertFalse(state?.contains("reset") ?? true, "a reset outside the window does not reset the connection: \(state ?? [])")
        sleep(6)  // more than the reset timeout (2 s) and a sweep (every 2 s)
        assertBytesFlow(client, backend, "after the spoofed reset")
    }

    func testBackendResetForDataBeforeSynAckDoesNotKillConnection() throws {
        // The backend's SYN-ACKs are held back, so it sits in SYN-RECV; data on the
        // client's tuple with ack=0 then makes its kernel answer with a reset at
        // seq 0 (RFC 793: <SEQ=SEG.ACK><CTL=RST>), far from the backend's sequence.
        let backendOut = try FaultInjector(ns: lab.backend, iface: "b0", hook: .egress)
        try backendOut.set(0, .init(sourcePort: 8080, flagsMask: Self.RST, flagsValue: Self.RST, action: FAULT_COUNT))
        try backendOut.set(
            1,
            .init(
                sourcePort: 8080, flagsMask: Self.SYN | Self.ACK, flagsValue: Self.SYN | Self.ACK,
                action: FAULT_DROP, times: 1000))
        let server = try lab.listen(in: lab.backend, on: Lab.backendAddress, 8080)
        let connecting = Background { try self.lab.connect(from: self.lab.client, to: Lab.vip, 80, timeout: 15) }
        let tracked = try lab.waitForConnection()
        let isn = try lab.clientISN(of: tracked)
        try lab.scapy(
            in: lab.client,
            """
            send(IP(src='\(Self.clientAddress)', dst='\(Lab.vip)') /
                 TCP(sport=\(tracked.clientPort), dport=80, flags='PA', seq=\(isn &+ 1), ack=0) / Raw(b'early'))
            """)
        // The balancer may drop the early segment itself (nothing but a SYN or RST
        // precedes the backend's answer); then the backend's reset is sent by hand,
        // as its kernel would have.
        try waitUntil("the backend's reset, or the early segment dropped") {
            try backendOut.counters(0).seen > 0 || lab.counter("dropped_out_of_window") > 0
        }
        if backendOut.counters(0).seen == 0 {
            let snatPort = tracked.snat.split(separator: ":").last.map(String.init) ?? "0"
            let snatAddress = tracked.snat.split(separator: ":").first.map(String.init) ?? ""
            try lab.scapy(
                in: lab.backend,
                """
                send(IP(src='\(Lab.backendAddress)', dst='\(snatAddress)') /
                     TCP(sport=8080, dport=\(snatPort), flags='R', seq=0))
                """)
        }
        let state = try lab.connection(from: tracked.client)?.state
        XCTAssertFalse(state?.contains("reset") ?? true, "the backend's reset at seq 0 does not reset the connection: \(state ?? [])")

        XCTAssertGreaterThan(backendOut.counters(1).applied, 0, "the backend's SYN-ACK was held back")
        try backendOut.set(1, .init(action: FAULT_NONE))  // the next SYN-ACK completes the handshake
        let client = try connecting.wait()
        let backend = try server.accept()
        let (header, rest) = try backend.readHeader()
        XCTAssertEqual(source(header), client.localEndpoint, "the header names the client")
        XCTAssertEqual(rest, [], "nothing of the refused segment reached the backend's stream")
        assertBytesFlow(client, backend, "after the handshake")
        sleep(6)
        assertBytesFlow(client, backend, "6 s after the backend's reset")
    }

    func testSynAfterResetStartsFreshState() throws {
        // Both connections are scapy's, from an address no kernel answers for, so the
        // second can reuse the first one's port and ISN exactly.
        try lab.addRawClient()
        let server = try lab.listen(in: lab.backend, on: Lab.backendAddress, 8080)
        let backend = Background { () throws -> [(TCP, [UInt8])] in
            try ["ok1", "ok2"].map { reply in
                let c = try server.accept()
                let (bytes, _) = c.receive(headerThen: 3, within: 3)
                if case .header(_, let n) = ProxyDecoder().decode(bytes), bytes.count == n + 3 { try c.write(reply) }
                return (c, bytes)  // open until the test ends: no FIN to confuse the reset
            }
        }
        let run = try lab.scapy(
            in: lab.client, check: false,
            """
            A, VIP, P, ISN = '\(Lab.rawClientAddress)', '\(Lab.vip)', 40777, 1000000
            def segment(flags, seq, ack=0, data=b''):
                send(IP(src=A, dst=VIP) / TCP(sport=P, dport=80, flags=flags, seq=seq, ack=ack) / Raw(data))
            def connect():
                segment('S', ISN)
                synack = expect('a SYN-ACK', lambda t: t.flags.S and t.flags.A)
                segment('A', ISN + 1, synack.seq + 1)
                return synack
            watch(A, P)
            synack = connect()
            segment('PA', ISN + 1, synack.seq + 1, b'one')
            expect("the backend's ok1", lambda t: payload(t) == b'ok1')
            segment('R', ISN + 4)          # valid: exactly the next byte the backend expects
            synack = connect()             # the same port and the same ISN
            print('second SYN-ACK acks ISN%+d' % (((synack.ack - ISN + 2**31) % 2**32) - 2**31))
            segment('PA', ISN + 1, synack.seq + 1, b'two')
            expect("the backend's ok2", lambda t: payload(t) == b'ok2')
            """)
        let streams = try backend.wait().map { $0.1 }
        XCTAssertEqual(run.stdout, "second SYN-ACK acks ISN+1\n", "the SYN-ACK of the second connection, as the client sees it")
        XCTAssertEqual(run.status, 0, run.stderr)
        for (i, (stream, data)) in zip(streams, ["one", "two"]).enumerated() {
            guard case .header(let header, let n) = ProxyDecoder().decode(stream) else {
                XCTFail("connection \(i + 1): the backend's stream does not start with a PROXY header: \(stream)")
                continue
            }
            XCTAssertEqual(source(header), "\(Lab.rawClientAddress):40777", "connection \(i + 1)")
            XCTAssertEqual(String(decoding: stream[n...], as: UTF8.self), data, "connection \(i + 1): the header once, then the data")
        }
    }

    // MARK: - Acks and SACK blocks before the SYN-ACK

    func testStrayBackendAckBeforeSynAckDoesNotWedgeProxyConnection() throws {
        // The backend sees no SYN until the stray ack is in. The client's kernel would
        // answer that ack with a reset; dropping its resets keeps this test about the
        // ack (resets outside the window are the tests above).
        let backendIn = try FaultInjector(ns: lab.backend, iface: "b0", hook: .ingress)
        try backendIn.set(
            0,
            .init(
                destinationPort: 8080, flagsMask: Self.SYN | Self.ACK, flagsValue: Self.SYN,
                action: FAULT_DROP, times: 1000))
        let clientOut = try FaultInjector(ns: lab.client, iface: "c0", hook: .egress)
        try clientOut.set(0, .init(destinationPort: 80, flagsMask: Self.RST, flagsValue: Self.RST, action: FAULT_DROP, times: 1000))
        let server = try lab.listen(in: lab.backend, on: Lab.backendAddress, 8080)
        let connecting = Background { try self.lab.connect(from: self.lab.client, to: Lab.vip, 80, timeout: 12) }
        let tracked = try lab.waitForConnection()
        let isn = try lab.clientISN(of: tracked)
        try lab.scapy(
            in: lab.backend,
            """
            send(IP(src='\(Lab.backendAddress)', dst='\(tracked.snatAddress)') /
                 TCP(sport=8080, dport=\(tracked.snatPort), flags='A', seq=777,
                     ack=\(isn &+ 1 &+ UInt32(tracked.headerLength) &+ 1000)))
            """)
        XCTAssertGreaterThan(backendIn.counters(0).applied, 0, "the backend has not seen the client's SYN yet")
        try backendIn.set(0, .init(action: FAULT_NONE))  // the client's next SYN gets through

        guard let client = try? connecting.wait(timeout: 30) else {
            let state = try lab.connection(from: tracked.client)?.state ?? []
            return XCTFail("connect() did not complete: the client got no SYN-ACK it could accept (balancer: \(state))")
        }
        let backend = try server.accept()
        let (header, rest) = try backend.readHeader()
        XCTAssertEqual(source(header), client.localEndpoint, "the header names the client")
        XCTAssertEqual(rest, [])
        assertBytesFlow(client, backend, "after the stray ack")
    }

    func testOutOfWindowAckAndSackLeaveAFreshEntryUnchanged() throws {
        // Fresh entries: scapy's SYNs, which the backend never sees.
        let backendIn = try FaultInjector(ns: lab.backend, iface: "b0", hook: .ingress)
        try backendIn.set(0, .init(destinationPort: 8080, flagsMask: Self.SYN, flagsValue: Self.SYN, action: FAULT_DROP, times: 1000))
        try lab.addRawClient()
        let isn: UInt32 = 3_000_000_000
        for (port, what, segment) in [
            (40888, "an ack 1 GiB past the header", { (headerEnd: UInt32) in "flags='A', seq=777, ack=\(headerEnd &+ (1 << 30))" }),
            (
                40889, "a SACK block past the header",
                { (headerEnd: UInt32) in
                    "flags='A', seq=777, ack=\(isn &+ 1), options=[('SAck', (\(headerEnd &+ 100), \(headerEnd &+ 200)))]"
                }
            )
        ] {
            try lab.scapy(
                in: lab.client,
                """
                send(IP(src='\(Lab.rawClientAddress)', dst='\(Lab.vip)') / TCP(sport=\(port), dport=80, flags='S', seq=\(isn)))
                """)
            let fresh = try lab.waitForConnection(from: "\(Lab.rawClientAddress):\(port)")
            XCTAssertEqual(fresh.state, ["syn-sent", "header-pending"])
            try lab.scapy(
                in: lab.backend,
                """
                send(IP(src='\(Lab.backendAddress)', dst='\(fresh.snatAddress)') /
                     TCP(sport=8080, dport=\(fresh.snatPort), \(segment(isn &+ 1 &+ UInt32(fresh.headerLength)))))
                """)
            usleep(100_000)
            XCTAssertEqual(try lab.connection(from: fresh.client)?.state, fresh.state, "after \(what) from the backend")
        }
        XCTAssertEqual(backendIn.counters(0).applied, 2, "the backend saw neither SYN")
    }

    // MARK: - Helpers

    /// A client connected through the service and the backend's end, after the header
    /// and the client's "abc" arrived.
    func connectAndSendABC(file: StaticString = #filePath, line: UInt = #line) throws -> (client: TCP, backend: TCP) {
        let server = try lab.listen(in: lab.backend, on: Lab.backendAddress, 8080)
        let client = try lab.connect(from: lab.client, to: Lab.vip, 80)
        try client.write("abc")
        let backend = try server.accept()
        let (header, rest) = try backend.readHeader()
        XCTAssertEqual(source(header), client.localEndpoint, "the header names the client", file: file, line: line)
        XCTAssertEqual(rest + (rest.count < 3 ? try backend.readExactly(3 - rest.count) : []), Array("abc".utf8), file: file, line: line)
        return (client, backend)
    }

    /// A few bytes each way arrive exactly, and neither end saw the stream end.
    func assertBytesFlow(_ client: TCP, _ backend: TCP, _ when: String, file: StaticString = #filePath, line: UInt = #line) {
        let up = Array("client bytes \(when)".utf8), down = Array("backend bytes \(when)".utf8)
        XCTAssertNoThrow(try client.write(up), file: file, line: line)
        let atBackend = backend.receive(up.count, within: 5)
        XCTAssertEqual(
            String(decoding: atBackend.bytes, as: UTF8.self), String(decoding: up, as: UTF8.self),
            "the backend got the client's bytes \(when)", file: file, line: line)
        XCTAssertFalse(atBackend.ended, "the backend's stream did not end \(when)", file: file, line: line)
        XCTAssertNoThrow(try backend.write(down), file: file, line: line)
        let atClient = client.receive(down.count, within: 5)
        XCTAssertEqual(
            String(decoding: atClient.bytes, as: UTF8.self), String(decoding: down, as: UTF8.self),
            "the client got the backend's bytes \(when)", file: file, line: line)
        XCTAssertFalse(atClient.ended, "the client's stream did not end \(when)", file: file, line: line)
    }

    func port(_ c: TCP) -> UInt16 { UInt16(c.localEndpoint.split(separator: ":").last!)! }

    /// "address:port" of the source in a TCP4 header ("" otherwise).
    func source(_ h: ProxyHeader) -> String {
        guard case .ipv4(let s, let sp, _, _, _) = h.addresses else { return "" }
        return "\(s):\(sp)"
    }

    func waitUntil(_ what: String, seconds: Double = 3, _ condition: () throws -> Bool) throws {
        let deadline = Date().addingTimeInterval(seconds)
        while try !condition() {
            guard Date() < deadline else { throw LabError.timeout(what) }
            usleep(20_000)
        }
    }
}

extension TCP {
    /// What one read gives within `seconds` ([] if nothing came), and whether the
    /// stream ended (end of stream or a reset).
    func readChunk(within seconds: Double) -> (bytes: [UInt8], ended: Bool) {
        guard seconds > 0, isReadable(within: seconds) else { return ([], false) }
        var buf = [UInt8](repeating: 0, count: 65536)
        let n = recv(fd, &buf, buf.count, Int32(MSG_DONTWAIT))
        if n == 0 || (n < 0 && errno != EAGAIN) { return ([], true) }
        return (n > 0 ? Array(buf[0..<n]) : [], false)
    }

    /// What arrives within `seconds` until `done` says it is enough, and whether the
    /// stream ended.
    func receive(within seconds: Double, until done: ([UInt8]) -> Bool) -> (bytes: [UInt8], ended: Bool) {
        var out: [UInt8] = []
        let deadline = Date().addingTimeInterval(seconds)
        while !done(out) && Date() < deadline {
            let (chunk, ended) = readChunk(within: deadline.timeIntervalSinceNow)
            out += chunk
            if ended { return (out, true) }
        }
        return (out, false)
    }

    /// Up to `count` bytes that arrive within `seconds`.
    func receive(_ count: Int, within seconds: Double) -> (bytes: [UInt8], ended: Bool) {
        receive(within: seconds) { $0.count >= count }
    }

    /// What arrives within `seconds` until a whole PROXY header and `count` bytes after
    /// it are in (or the bytes cannot be a header).
    func receive(headerThen count: Int, within seconds: Double) -> (bytes: [UInt8], ended: Bool) {
        receive(within: seconds) { bytes in
            switch ProxyDecoder().decode(bytes) {
            case .header(_, let n): return bytes.count >= n + count
            case .invalid: return true
            case .needMoreData: return false
            }
        }
    }
}
