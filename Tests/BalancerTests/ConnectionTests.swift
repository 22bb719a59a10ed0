import Balancer
import Datapath
import DatapathABI
import DatapathTesting
import XCTest

/// `Connection` read through the map protocol: what `ppctl conntrack list` shows
/// of a connection's two entries, without root.
final class ConnectionTests: XCTestCase {
    private func key(_ s: String, _ d: String) throws -> ppctl_ct_key {
        FlowHash.key(client: try Endpoint(parsing: s), vip: try Endpoint(parsing: d))
    }

    private func entry(dir: Int32, to: String, from: String, state: UInt32, dirFlags: UInt32 = 0) throws -> ppctl_ct_entry {
        let d = try Endpoint(parsing: to), s = try Endpoint(parsing: from)
        var e = ppctl_ct_entry()
        e.dir = UInt8(dir)
        e.dir_flags = UInt8(dirFlags)
        e.family = d.address.family
        e.nat_daddr = d.address.abi
        e.nat_dport = d.port.bigEndian
        e.nat_saddr = s.address.abi
        e.nat_sport = s.port.bigEndian
        e.state = state
        return e
    }

    func testAConnectionIsReadFromItsOriginalEntryOnly() throws {
        let map = InMemoryMap<ppctl_ct_key, ppctl_ct_entry>()
        var original = try entry(
            dir: PPCTL_DIR_ORIGINAL, to: "198.18.2.2:8080", from: "198.18.2.1:40000",
            state: PPCTL_CT_SYN_ACK_SEEN | PPCTL_CT_ESTABLISHED | PPCTL_CT_HDR_SENT | PPCTL_CT_HDR_ACKED | PPCTL_CT_FIN_BACKEND)
        original.hdr_len = 28
        original.unique_id = 0xabc
        original.created_ns = 1_000_000_000
        try map.update(try key("198.18.1.2:40000", "198.18.0.10:80"), original, mode: .noExist)
        let reply = try entry(dir: PPCTL_DIR_REPLY, to: "198.18.1.2:40000", from: "198.18.0.10:80", state: original.state)
        try map.update(try key("198.18.2.2:8080", "198.18.2.1:40000"), reply, mode: .noExist)

        let all = Connection.all(in: map, nowNanoseconds: 3_500_000_000)
        XCTAssertEqual(all.count, 1, "one connection, not one per entry")
        let c = try XCTUnwrap(all.first)
        XCTAssertEqual(c.client.description, "198.18.1.2:40000")
        XCTAssertEqual(c.vip.description, "198.18.0.10:80")
        XCTAssertEqual(c.backend.description, "198.18.2.2:8080")
        XCTAssertEqual(c.snat.description, "198.18.2.1:40000")
        XCTAssertEqual(c.flags, [.synAckSeen, .established, .headerSent, .headerAcked, .finBackend])
        XCTAssertEqual(c.state, ["established", "fin-backend", "header-acked"])
        XCTAssertEqual(c.headerLength, 28)
        XCTAssertEqual(c.uniqueID, "0000000000000abc")
        XCTAssertEqual(c.ageSeconds, 2.5, accuracy: 1e-9)
    }

    func testStateWordsFollowTheBits() throws {
        let cases: [(UInt32, UInt32, UInt16, [String])] = [
            (0, 0, 0, ["syn-sent"]),
            (PPCTL_CT_SYN_ACK_SEEN, 0, 16, ["syn-recv", "header-pending"]),
            (
                PPCTL_CT_ESTABLISHED | PPCTL_CT_HDR_SENT | PPCTL_CT_FIN_CLIENT | PPCTL_CT_RST, 0, 16,
                ["established", "fin-client", "reset", "header-sent"]
            ),
            (
                PPCTL_CT_ESTABLISHED | PPCTL_CT_FIN_CLIENT | PPCTL_CT_FIN_BACKEND | PPCTL_CT_TIME_WAIT, PPCTL_CT_L_LOCAL, 0,
                ["established", "fin-client", "fin-backend", "time-wait", "local"]
            )
        ]
        for (state, dirFlags, hdr, words) in cases {
            var e = try entry(
                dir: PPCTL_DIR_ORIGINAL, to: "[2001:2:0:2::2]:8080", from: "[2001:2:0:2::1]:1024",
                state: state, dirFlags: dirFlags)
            e.hdr_len = hdr
            let c = try XCTUnwrap(Connection(key: try key("[2001:2:0:1::2]:5000", "[2001:2::10]:80"), entry: e, nowNanoseconds: 0))
            XCTAssertEqual(c.state, words)
            XCTAssertEqual(c.flags.contains(.local), dirFlags != 0)
            XCTAssertEqual(c.client.description, "[2001:2:0:1::2]:5000")
        }
    }
}
