import DatapathABI
import Foundation
import XCTest

/// Packet-level tests of ppctl_tc_ingress with BPF_PROG_TEST_RUN: each fixture is an
/// input frame, the map state it meets (services from `ppctl service add`, connection
/// state from the fixtures before it), the frame that must come out, byte for byte,
/// and the verdict. Checksums are checked against our own computation. No packet is
/// sent: one lab serves every test, and each test uses its own client port.
final class PacketTests: XCTestCase {
    private static var shared: PacketLab?
    private static var setupError: Error?

    override class func setUp() {
        do {
            let p = try PacketLab()
            try p.service("198.18.0.10:80 --backend 198.18.2.2:8080")
            try p.service("198.18.0.10:81 --proxy v2 --backend 198.18.2.2:8080")
            try p.service("198.18.0.10:82 --proxy v1 --backend 198.18.2.2:8080")
            try p.service("198.18.0.10:83 --proxy v2 --tlv 0xE5=tenant-42 --unique-id --crc32c --backend 198.18.2.2:8080")
            try p.service("[2001:2::10]:81 --proxy v2 --backend [2001:2:0:2::2]:8080")
            shared = p
        } catch {
            setupError = error
        }
    }

    /// Test case objects outlive the suite: close the lab here, not in deinit.
    override class func tearDown() {
        shared?.close()
        shared = nil
    }

    private var lab: PacketLab!

    override func setUpWithError() throws {
        if let e = PacketTests.setupError { throw e }
        lab = PacketTests.shared
    }

    // MARK: - A connection's two sides

    /// One client connection through the balancer: the segments on the client's
    /// side (client <-> VIP, interface l0) and on the backend's (SNAT address <->
    /// backend, interface l1). SNAT keeps the client's port (it is outside the
    /// namespace's ephemeral range).
    struct Conn {
        var cport: UInt16, vport: UInt16
        var v6 = false
        var isn: UInt32 = 1000, bisn: UInt32 = 5000
        var client: String { v6 ? "2001:2:0:1::2" : "198.18.1.2" }
        var vip: String { v6 ? "2001:2::10" : "198.18.0.10" }
        var backend: String { v6 ? "2001:2:0:2::2" : "198.18.2.2" }
        var snat: String { v6 ? "2001:2:0:2::1" : "198.18.2.1" }

        func fromClient(_ flags: UInt8, seq: UInt32, ack: UInt32 = 0, _ payload: [UInt8] = [], options: [UInt8] = []) -> Segment {
            Segment(
                srcMAC: MAC.client, dstMAC: MAC.l0, src: client, dst: vip, sport: cport, dport: vport,
                seq: seq, ack: ack, flags: flags, options: options, payload: payload)
        }
        func toBackend(_ flags: UInt8, seq: UInt32, ack: UInt32 = 0, _ payload: [UInt8] = [], options: [UInt8] = []) -> Segment {
            Segment(
                srcMAC: MAC.l1, dstMAC: MAC.backend, src: snat, dst: backend, sport: cport, dport: 8080,
                seq: seq, ack: ack, flags: flags, options: options, payload: payload)
        }
        func fromBackend(_ flags: UInt8, seq: UInt32, ack: UInt32, _ payload: [UInt8] = [], options: [UInt8] = []) -> Segment {
            Segment(
                srcMAC: MAC.backend, dstMAC: MAC.l1, src: backend, dst: snat, sport: 8080, dport: cport,
                seq: seq, ack: ack, flags: flags, options: options, payload: payload)
        }
        func toClient(_ flags: UInt8, seq: UInt32, ack: UInt32, _ payload: [UInt8] = [], options: [UInt8] = []) -> Segment {
            Segment(
                srcMAC: MAC.l0, dstMAC: MAC.client, src: vip, dst: client, sport: vport, dport: cport,
                seq: seq, ack: ack, flags: flags, options: options, payload: payload)
        }

        /// The v2 header of this connection without TLVs.
        var v2Header: [UInt8] {
            bytes(hex: "0d0a0d0a000d0a515549540a 21") + (v6 ? [0x21, 0, 36] : [0x11, 0, 12])
                + ipBytes(client) + ipBytes(vip) + be16(cport) + be16(vport)
        }
    }

    static let mss: [UInt8] = [2, 4, 0x05, 0xb4]

    /// SYN and SYN-ACK through the program, checked on the way.
    func open(_ c: Conn, file: StaticString = #filePath, line: UInt = #line) throws {
        try lab.check(
            c.fromClient(TCPFlag.syn, seq: c.isn, options: Self.mss), from: .client, action: .redirect,
            expected: c.toBackend(TCPFlag.syn, seq: c.isn, options: Self.mss), "SYN", file: file, line: line)
        let synAck = TCPFlag.syn | TCPFlag.ack
        try lab.check(
            c.fromBackend(synAck, seq: c.bisn, ack: c.isn + 1, options: Self.mss), from: .backend, action: .redirect,
            expected: c.toClient(synAck, seq: c.bisn, ack: c.isn + 1, options: Self.mss), "SYN-ACK", file: file, line: line)
    }

    /// open, then the handshake ACK, which must come out as the header segment.
    func establish(_ c: Conn, header: [UInt8], file: StaticString = #filePath, line: UInt = #line) throws {
        try open(c, file: file, line: line)
        try lab.check(
            c.fromClient(TCPFlag.ack, seq: c.isn + 1, ack: c.bisn + 1), from: .client, action: .redirect,
            expected: c.toBackend(TCPFlag.ack | TCPFlag.psh, seq: c.isn + 1, ack: c.bisn + 1, header),
            "handshake ACK grown into the header segment", file: file, line: line)
    }

    func state(_ c: Conn) -> UInt32 { lab.entry(c.client, c.cport, c.vip, c.vport)?.state ?? 0 }

    // MARK: - New connections

    func testSynToServiceIsTranslatedAndTracked() throws {
        let c = Conn(cport: 12001, vport: 81)
        let before = try lab.stats()
        try lab.check(
            c.fromClient(TCPFlag.syn, seq: c.isn, options: Self.mss), from: .client, action: .redirect,
            expected: c.toBackend(TCPFlag.syn, seq: c.isn, options: Self.mss), "SYN to the VIP")

        let orig = try XCTUnwrap(lab.entry(c.client, c.cport, c.vip, c.vport), "ORIGINAL entry")
        XCTAssertEqual(orig.dir, UInt8(PPCTL_DIR_ORIGINAL))
        XCTAssertEqual(orig.nat_saddr.w.0, PacketLab.addr(c.snat).w.0)
        XCTAssertEqual(orig.nat_daddr.w.0, PacketLab.addr(c.backend).w.0)
        XCTAssertEqual(UInt16(bigEndian: orig.nat_sport), c.cport, "SNAT keeps the client's port")
        XCTAssertEqual(UInt16(bigEndian: orig.nat_dport), 8080)
        XCTAssertEqual(orig.client_isn, c.isn)
        XCTAssertEqual(orig.hdr_len, 28, "v2 over IPv4 without TLVs")
        XCTAssertEqual(orig.snd_end, c.isn + 1)
        XCTAssertEqual(orig.state, 0)
        XCTAssertEqual(orig.ifindex, lab.l1)

        let reply = try XCTUnwrap(lab.entry(c.backend, 8080, c.snat, c.cport), "REPLY entry")
        XCTAssertEqual(reply.dir, UInt8(PPCTL_DIR_REPLY))
        XCTAssertEqual(reply.nat_saddr.w.0, PacketLab.addr(c.vip).w.0)
        XCTAssertEqual(reply.nat_daddr.w.0, PacketLab.addr(c.client).w.0)
        XCTAssertEqual(UInt16(bigEndian: reply.nat_sport), 81)
        XCTAssertEqual(UInt16(bigEndian: reply.nat_dport), c.cport)
        XCTAssertEqual(reply.ifindex, lab.l0, "replies leave by the interface the SYN came in on")
        XCTAssertEqual(withUnsafeBytes(of: reply.dmac) { Array($0) }, MAC.client)
        XCTAssertEqual(withUnsafeBytes(of: reply.smac) { Array($0) }, MAC.l0)
        XCTAssertEqual(reply.hdr_len, 28)

        let after = try lab.stats()
        XCTAssertEqual(after.connections - before.connections, 1)
        XCTAssertEqual(after.packets_to_backend - before.packets_to_backend, 1)
    }

    /// A SYN whose backend has no route is dropped and counted under its reason
    /// (and in fwd_errors, the sum), and leaves no entry.
    func testASynWithNoRouteToTheBackendIsDroppedAsNoRoute() throws {
        try lab.service("198.18.0.10:84 --backend 203.0.113.9:8080")
        let c = Conn(cport: 12901, vport: 84)
        let before = try lab.stats()
        try lab.check(
            c.fromClient(TCPFlag.syn, seq: c.isn, options: Self.mss), from: .client, action: .shot,
            expected: nil, "SYN towards a backend the balancer has no route to")
        XCTAssertNil(lab.entry(c.client, c.cport, c.vip, c.vport), "no connection")
        let after = try lab.stats()
        XCTAssertEqual(after.dropped_no_route - before.dropped_no_route, 1)
        XCTAssertEqual(after.fwd_errors - before.fwd_errors, 1, "fwd_errors is the sum of the reasons")
        XCTAssertEqual(after.dropped_rewrite_error, before.dropped_rewrite_error)
        XCTAssertEqual(after.dropped_header_error, before.dropped_header_error)
        XCTAssertEqual(after.dropped_redirect_error, before.dropped_redirect_error)
        XCTAssertEqual(after.connections, before.connections)
    }

    func testPlainServiceTranslatesAddressesOnly() throws {
        let c = Conn(cport: 12015, vport: 80)
        try open(c)
        try lab.check(
            c.fromClient(TCPFlag.ack, seq: c.isn + 1, ack: c.bisn + 1), from: .client, action: .redirect,
            expected: c.toBackend(TCPFlag.ack, seq: c.isn + 1, ack: c.bisn + 1), "handshake ACK, no header")
        let data = Array("hello".utf8)
        try lab.check(
            c.fromClient(TCPFlag.ack | TCPFlag.psh, seq: c.isn + 1, ack: c.bisn + 1, data), from: .client,
            action: .redirect, expected: c.toBackend(TCPFlag.ack | TCPFlag.psh, seq: c.isn + 1, ack: c.bisn + 1, data),
            "data, seq unchanged")
        try lab.check(
            c.fromBackend(TCPFlag.ack, seq: c.bisn + 1, ack: c.isn + 6), from: .backend, action: .redirect,
            expected: c.toClient(TCPFlag.ack, seq: c.bisn + 1, ack: c.isn + 6), "ack unchanged")
    }

    // MARK: - The header segment

    func testHandshakeAckCarriesV2Header() throws {
        let c = Conn(cport: 12002, vport: 81)
        try open(c)
        // With timestamps: the header goes after the TCP options, which stay.
        let ts: [UInt8] = [1, 1, 8, 10] + be32(77) + be32(99)
        try lab.check(
            c.fromClient(TCPFlag.ack, seq: c.isn + 1, ack: c.bisn + 1, options: ts), from: .client, action: .redirect,
            expected: c.toBackend(TCPFlag.ack | TCPFlag.psh, seq: c.isn + 1, ack: c.bisn + 1, c.v2Header, options: ts),
            "handshake ACK + v2 header")
        XCTAssertEqual(c.v2Header.count, 28)
        let s = state(c)
        XCTAssertNotEqual(s & UInt32(PPCTL_CT_ESTABLISHED), 0)
        XCTAssertNotEqual(s & UInt32(PPCTL_CT_HDR_SENT), 0)
        XCTAssertEqual(s & UInt32(PPCTL_CT_HDR_ACKED), 0)
    }

    func testHandshakeAckCarriesV1Header() throws {
        let c = Conn(cport: 12003, vport: 82)
        let header = Array("PROXY TCP4 198.18.1.2 198.18.0.10 12003 82\r\n".utf8)
        try establish(c, header: header)
        XCTAssertEqual(lab.entry(c.client, c.cport, c.vip, c.vport)?.hdr_len, UInt16(header.count))
    }

    func testV2HeaderWithTLVsUniqueIDAndCRC32C() throws {
        let c = Conn(cport: 12004, vport: 83)
        try open(c)
        let e = try XCTUnwrap(lab.entry(c.client, c.cport, c.vip, c.vport))
        XCTAssertNotEqual(e.unique_id, 0)
        let uid = Array(String(format: "%016llx", e.unique_id).utf8)
        let tlvs = [0xE5] + be16(9) + Array("tenant-42".utf8) + [0x05] + be16(16) + uid + [0x03, 0, 4, 0, 0, 0, 0]
        var header =
            bytes(hex: "0d0a0d0a000d0a515549540a 21 11") + be16(UInt16(12 + tlvs.count))
            + ipBytes(c.client) + ipBytes(c.vip) + be16(c.cport) + be16(c.vport) + tlvs
        header.replaceSubrange(header.count - 4..<header.count, with: be32(crc32c(header)))
        XCTAssertEqual(crc32c(Array("123456789".utf8)), 0xE306_9283, "the reference CRC32C")
        XCTAssertEqual(Int(e.hdr_len), header.count)
        try lab.check(
            c.fromClient(TCPFlag.ack, seq: c.isn + 1, ack: c.bisn + 1), from: .client, action: .redirect,
            expected: c.toBackend(TCPFlag.ack | TCPFlag.psh, seq: c.isn + 1, ack: c.bisn + 1, header),
            "v2 header with a custom TLV, UNIQUE_ID and CRC32C")
    }

    // MARK: - Sequence translation

    func testClientDataSeqIsTranslated() throws {
        let c = Conn(cport: 12005, vport: 81)
        try establish(c, header: c.v2Header)
        let pa = TCPFlag.psh | TCPFlag.ack
        try lab.check(
            c.fromClient(pa, seq: c.isn + 1, ack: c.bisn + 1, Array("hello".utf8)), from: .client, action: .redirect,
            expected: c.toBackend(pa, seq: c.isn + 29, ack: c.bisn + 1, Array("hello".utf8)), "first data: seq + 28")
        try lab.check(
            c.fromClient(pa, seq: c.isn + 6, ack: c.bisn + 1, Array("world".utf8)), from: .client, action: .redirect,
            expected: c.toBackend(pa, seq: c.isn + 34, ack: c.bisn + 1, Array("world".utf8)), "next data: seq + 28")
        XCTAssertEqual(lab.entry(c.client, c.cport, c.vip, c.vport)?.snd_end, c.isn + 11)
    }

    func testBackendAckAndSackAreTranslatedAndClamped() throws {
        let c = Conn(cport: 12006, vport: 81)
        try establish(c, header: c.v2Header)
        let pa = TCPFlag.psh | TCPFlag.ack, a = TCPFlag.ack
        try lab.check(
            c.fromClient(pa, seq: 1001, ack: 5001, Array("hello".utf8)), from: .client, action: .redirect,
            expected: c.toBackend(pa, seq: 1029, ack: 5001, Array("hello".utf8)), "data")
        func sack(_ l: UInt32, _ r: UInt32) -> [UInt8] { [1, 1, 5, 10] + be32(l) + be32(r) }

        try lab.check(
            c.fromBackend(a, seq: 5001, ack: 1015), from: .backend, action: .redirect,
            expected: c.toClient(a, seq: 5001, ack: 1001), "an ack of part of the header is clamped to ISN+1")
        try lab.check(
            c.fromBackend(a, seq: 5001, ack: 1001, options: sack(1005, 1010)), from: .backend, action: .redirect,
            expected: c.toClient(a, seq: 5001, ack: 1001, options: [1, 1, 1, 1] + [UInt8](repeating: 1, count: 8)),
            "a SACK block inside the header becomes NOPs")
        XCTAssertEqual(state(c) & UInt32(PPCTL_CT_HDR_ACKED), 0)
        try lab.check(
            c.fromBackend(a, seq: 5001, ack: 1029, options: sack(1031, 1034)), from: .backend, action: .redirect,
            expected: c.toClient(a, seq: 5001, ack: 1001, options: sack(1003, 1006)), "header acked; SACK - 28")
        XCTAssertNotEqual(state(c) & UInt32(PPCTL_CT_HDR_ACKED), 0)
        try lab.check(
            c.fromBackend(pa, seq: 5001, ack: 1034, Array("hi".utf8)), from: .backend, action: .redirect,
            expected: c.toClient(pa, seq: 5001, ack: 1006, Array("hi".utf8)), "ack - 28, data untouched")
    }

    func testOutOfWindowBackendAckBeforeHeaderAckedChangesNothing() throws {
        let c = Conn(cport: 12010, vport: 81)
        try establish(c, header: c.v2Header)
        let orig = try XCTUnwrap(lab.entry(c.client, c.cport, c.vip, c.vport))
        let reply = try XCTUnwrap(lab.entry(c.backend, 8080, c.snat, c.cport))
        let before = try lab.stats()
        for ack in [UInt32(999_999), 1030, 900] {
            // Ack beyond what the client sent (1001 + 28), or before ISN+1.
            let out = try lab.run(c.fromBackend(TCPFlag.ack, seq: 5001, ack: ack).frame, from: .backend)
            XCTAssertEqual(out.action, TCAction.shot.rawValue, "ack \(ack) dropped")
        }
        XCTAssertEqual(try lab.stats().dropped_out_of_window - before.dropped_out_of_window, 3)
        let orig2 = try XCTUnwrap(lab.entry(c.client, c.cport, c.vip, c.vport))
        let reply2 = try XCTUnwrap(lab.entry(c.backend, 8080, c.snat, c.cport))
        XCTAssertEqual(orig2.state, orig.state)
        XCTAssertEqual(reply2.state, reply.state)
        XCTAssertEqual(reply2.snd_end, reply.snd_end)
        XCTAssertEqual(orig2.snd_end, orig.snd_end)
    }

    // MARK: - RST and FIN

    func testClientResetOnlyAtNextSequence() throws {
        let c = Conn(cport: 12007, vport: 81)
        try establish(c, header: c.v2Header)
        let before = try lab.stats()
        let s = state(c)
        try lab.check(
            c.fromClient(TCPFlag.rst, seq: 1500), from: .client, action: .redirect,
            expected: c.toBackend(TCPFlag.rst, seq: 1528), "RST off the next sequence: passed on, translated")
        XCTAssertEqual(state(c), s, "state unchanged")
        XCTAssertEqual(try lab.stats().ignored_rst - before.ignored_rst, 1)
        try lab.check(
            c.fromClient(TCPFlag.rst, seq: 1001), from: .client, action: .redirect,
            expected: c.toBackend(TCPFlag.rst, seq: 1029), "RST at the next sequence")
        XCTAssertNotEqual(state(c) & UInt32(PPCTL_CT_RST), 0)
        XCTAssertNotEqual(lab.entry(c.backend, 8080, c.snat, c.cport)!.state & UInt32(PPCTL_CT_RST), 0, "mirrored")
    }

    func testBackendResetOnlyAtNextSequence() throws {
        let c = Conn(cport: 12008, vport: 81)
        try establish(c, header: c.v2Header)
        let s = state(c)
        try lab.check(
            c.fromBackend(TCPFlag.rst, seq: 7000, ack: 0), from: .backend, action: .redirect,
            expected: c.toClient(TCPFlag.rst, seq: 7000, ack: 0), "RST off the next sequence")
        XCTAssertEqual(state(c), s, "state unchanged")
        try lab.check(
            c.fromBackend(TCPFlag.rst, seq: 5001, ack: 0), from: .backend, action: .redirect,
            expected: c.toClient(TCPFlag.rst, seq: 5001, ack: 0), "RST at the next sequence")
        XCTAssertNotEqual(state(c) & UInt32(PPCTL_CT_RST), 0)
    }

    func testFinInBothDirections() throws {
        let c = Conn(cport: 12009, vport: 81)
        try establish(c, header: c.v2Header)
        let fa = TCPFlag.fin | TCPFlag.ack
        try lab.check(
            c.fromBackend(TCPFlag.ack, seq: 5001, ack: 1029), from: .backend, action: .redirect,
            expected: c.toClient(TCPFlag.ack, seq: 5001, ack: 1001), "header acked")
        try lab.check(
            c.fromClient(fa, seq: 1001, ack: 5001), from: .client, action: .redirect,
            expected: c.toBackend(fa, seq: 1029, ack: 5001), "client FIN")
        XCTAssertNotEqual(state(c) & UInt32(PPCTL_CT_FIN_CLIENT), 0)
        try lab.check(
            c.fromBackend(fa, seq: 5001, ack: 1030), from: .backend, action: .redirect,
            expected: c.toClient(fa, seq: 5001, ack: 1002), "backend FIN")
        XCTAssertNotEqual(state(c) & UInt32(PPCTL_CT_FIN_BACKEND), 0)
        XCTAssertEqual(state(c) & UInt32(PPCTL_CT_TIME_WAIT), 0, "the client closed first")
        try lab.check(
            c.fromClient(TCPFlag.ack, seq: 1002, ack: 5002), from: .client, action: .redirect,
            expected: c.toBackend(TCPFlag.ack, seq: 1030, ack: 5002), "last ACK")
    }

    // MARK: - Unusual shapes

    func testFastOpenDataOnSynIsTrimmed() throws {
        let c = Conn(cport: 12011, vport: 81)
        let before = try lab.stats()
        let tfo: [UInt8] = Self.mss + [34, 10] + bytes(hex: "0102030405060708") + [1, 1]
        try lab.check(
            c.fromClient(TCPFlag.syn, seq: c.isn, Array("GET / HTTP/1.0\r\n\r\n".utf8), options: tfo),
            from: .client, action: .redirect,
            expected: c.toBackend(TCPFlag.syn, seq: c.isn, options: tfo), "SYN data removed")
        XCTAssertEqual(try lab.stats().tfo_trimmed - before.tfo_trimmed, 1)
    }

    func testIPv4OptionsStayAndTheHeaderFollowsTCP() throws {
        let c = Conn(cport: 12012, vport: 81)
        let opts: [UInt8] = [1, 1, 1, 0]  // NOP NOP NOP EOL: IHL 6
        var syn = c.fromClient(TCPFlag.syn, seq: c.isn), synOut = c.toBackend(TCPFlag.syn, seq: c.isn)
        syn.ipOptions = opts
        synOut.ipOptions = opts
        try lab.check(syn, from: .client, action: .redirect, expected: synOut, "SYN with IP options")
        try lab.check(
            c.fromBackend(TCPFlag.syn | TCPFlag.ack, seq: c.bisn, ack: c.isn + 1), from: .backend,
            action: .redirect, expected: c.toClient(TCPFlag.syn | TCPFlag.ack, seq: c.bisn, ack: c.isn + 1), "SYN-ACK")
        var ack = c.fromClient(TCPFlag.ack, seq: c.isn + 1, ack: c.bisn + 1)
        var ackOut = c.toBackend(TCPFlag.ack | TCPFlag.psh, seq: c.isn + 1, ack: c.bisn + 1, c.v2Header)
        ack.ipOptions = opts
        ackOut.ipOptions = opts
        try lab.check(ack, from: .client, action: .redirect, expected: ackOut, "header segment with IP options")
    }

    func testIPv6WithExtensionHeader() throws {
        let c = Conn(cport: 12013, vport: 81, v6: true)
        var syn = c.fromClient(TCPFlag.syn, seq: c.isn, options: Self.mss)
        var synOut = c.toBackend(TCPFlag.syn, seq: c.isn, options: Self.mss)
        syn.hopByHop = true
        synOut.hopByHop = true
        try lab.check(syn, from: .client, action: .redirect, expected: synOut, "IPv6 SYN with hop-by-hop options")
        XCTAssertEqual(lab.entry(c.client, c.cport, c.vip, c.vport)?.hdr_len, 52)
        let synAck = TCPFlag.syn | TCPFlag.ack
        try lab.check(
            c.fromBackend(synAck, seq: c.bisn, ack: c.isn + 1), from: .backend, action: .redirect,
            expected: c.toClient(synAck, seq: c.bisn, ack: c.isn + 1), "IPv6 SYN-ACK")
        var ack = c.fromClient(TCPFlag.ack, seq: c.isn + 1, ack: c.bisn + 1)
        var ackOut = c.toBackend(TCPFlag.ack | TCPFlag.psh, seq: c.isn + 1, ack: c.bisn + 1, c.v2Header)
        ack.hopByHop = true
        ackOut.hopByHop = true
        try lab.check(ack, from: .client, action: .redirect, expected: ackOut, "IPv6 header segment")
        try lab.check(
            c.fromBackend(TCPFlag.ack, seq: c.bisn + 1, ack: c.isn + 53), from: .backend, action: .redirect,
            expected: c.toClient(TCPFlag.ack, seq: c.bisn + 1, ack: c.isn + 1), "IPv6 ack - 52")
    }

    // MARK: - Not ours

    func testPacketForNoServicePassesUntouched() throws {
        let c = Conn(cport: 12014, vport: 9999)
        try lab.check(c.fromClient(TCPFlag.syn, seq: 1), from: .client, action: .ok, expected: nil, "SYN to a port with no service")
        try lab.check(
            c.fromClient(TCPFlag.ack, seq: 1, ack: 1, Array("x".utf8)), from: .client, action: .ok, expected: nil,
            "data to a port with no service")
        var direct = c.fromClient(TCPFlag.syn, seq: 1)
        direct.dst = "198.18.2.2"
        try lab.check(direct, from: .client, action: .ok, expected: nil, "SYN to a backend directly")
        XCTAssertNil(lab.entry(c.client, c.cport, c.vip, c.vport))
    }

    /// A frame a switch flooded (addressed to another host's MAC) is another
    /// balancer's to take, not this one's: passed on, nothing tracked.
    func testAFrameForAnotherHostIsNotTaken() throws {
        let c = Conn(cport: 12018, vport: 81)
        var syn = c.fromClient(TCPFlag.syn, seq: c.isn, options: Self.mss)
        syn.dstMAC = [0x02, 0, 0, 0, 0x77, 0x01]
        try lab.check(syn, from: .client, action: .ok, expected: nil, "SYN to the VIP in a frame for another MAC")
        XCTAssertNil(lab.entry(c.client, c.cport, c.vip, c.vport))
        try lab.check(
            c.fromClient(TCPFlag.syn, seq: c.isn, options: Self.mss), from: .client, action: .redirect,
            expected: c.toBackend(TCPFlag.syn, seq: c.isn, options: Self.mss), "the same SYN addressed to the balancer is taken")
        XCTAssertNotNil(lab.entry(c.client, c.cport, c.vip, c.vport))
    }

    func testMalformedPacketsPassUntouched() throws {
        let c = Conn(cport: 12016, vport: 81)
        let syn = c.fromClient(TCPFlag.syn, seq: 1).frame
        func edit(_ f: [UInt8], _ at: Int, _ value: [UInt8]) -> [UInt8] {
            var g = f
            g.replaceSubrange(at..<at + value.count, with: value)
            return g
        }
        let cases: [(String, [UInt8])] = [
            // (BPF_PROG_TEST_RUN refuses frames shorter than Ethernet + IPv4 header.)
            ("IPv4 header without TCP", Array(syn.prefix(34))),
            ("TCP header cut short", Array(syn.prefix(44))),
            ("IPv4 total length shorter than IP + TCP headers", edit(syn, 16, be16(30))),
            ("IPv4 IHL below 5", edit(syn, 14, [0x44])),
            ("TCP data offset below 5", edit(syn, 46, [0x40])),
            ("TCP data offset beyond the datagram", edit(syn, 46, [0xF0])),
            ("IPv4 fragment", edit(syn, 20, [0x20, 0x00])),
            (
                "IPv6 payload length beyond the frame",
                edit(Conn(cport: 12016, vport: 81, v6: true).fromClient(TCPFlag.syn, seq: 1).frame, 18, be16(200))
            )
        ]
        let before = try lab.stats()
        for (what, frame) in cases {
            do { try lab.check(frame, from: .client, action: .ok, expected: nil, what) } catch { XCTFail("\(what): \(error)") }
        }
        XCTAssertNil(lab.entry(c.client, c.cport, c.vip, c.vport), "no connection from a malformed SYN")
        XCTAssertEqual(try lab.stats().passed_unparsed - before.passed_unparsed, UInt64(cases.count), "each one counted")
    }
}
