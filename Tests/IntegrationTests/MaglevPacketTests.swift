import Balancer
import Datapath
import DatapathABI
import Foundation
import XCTest
import ProxyProtocol

/// Maglev in the datapath, with BPF_PROG_TEST_RUN: two balancers (two labs, two
/// instances) with the same configuration and hash seed send each of 10,000 SYNs to
/// the same backend, the one the control plane's own model predicts (FlowHash and
/// the service's table); removing one of ten backends moves at most 11% of new flows.
final class MaglevPacketTests: XCTestCase {
    static let seed: UInt32 = 0x5eed_1234
    static let vip = "198.18.0.10"
    static let backends = (2...11).map { "198.18.2.\($0)" }

    var labs: [PacketLab] = []

    override func tearDown() {
        for lab in labs { lab.close() }
        labs = []
    }

    /// A packet lab attached with the test's seed, every backend a permanent
    /// neighbour, and the ten-backend service.
    func balancer(seed: UInt32 = MaglevPacketTests.seed) throws -> PacketLab {
        let p = try PacketLab(attach: ["--hash-seed", String(seed)])
        labs.append(p)
        let neighbours = Self.backends.map {
            "ip -n \(p.lab.balancer) neigh replace \($0) lladdr \(mac(MAC.backend)) dev l1 nud permanent"
        }
        try p.lab.sh(neighbours.joined(separator: " && "))
        try p.service("\(Self.vip):80 " + Self.backends.map { "--backend \($0):8080" }.joined(separator: " "))
        return p
    }

    /// The SYN of client tuple `i` (addresses 198.18.1.2-51, ports from `base`).
    func syn(_ i: Int, base: Int) -> (frame: [UInt8], client: Endpoint) {
        let address = "198.18.1.\(2 + i % 50)", port = UInt16(base + i)
        let s = Segment(
            srcMAC: MAC.client, dstMAC: MAC.l0, src: address, dst: Self.vip, sport: port, dport: 80,
            seq: 1000, flags: TCPFlag.syn, options: PacketTests.mss)
        return (s.frame, Endpoint(address: IPAddress(address)!, port: port))
    }

    /// The backend address each of `count` SYNs was sent to (the destination of the
    /// frame the program left; nil if it did not redirect it).
    func destinations(_ p: PacketLab, count: Int, base: Int) throws -> [String?] {
        var out: [String?] = []
        out.reserveCapacity(count)
        let frames = (0..<count).map { syn($0, base: base).frame }
        let l0 = p.l0, fd = p.programFD
        let start = Date()
        try FaultInjector.inNamespace(p.lab.balancer) {
            for frame in frames {
                let r = try PacketLab.testRun(fd, frame, ifindex: l0, repeat: 1)
                guard Int32(bitPattern: r.retval) == TCAction.redirect.rawValue, r.out.count >= 34 else {
                    out.append(nil)
                    continue
                }
                out.append(r.out[30..<34].map(String.init).joined(separator: "."))
            }
        }
        print("maglev packets: \(count) SYNs through \(p.lab.balancer) in \(String(format: "%.2f", Date().timeIntervalSince(start))) s")
        return out
    }

    func testTwoBalancersWithTheSameConfigurationChooseTheSameBackendForEveryTuple() throws {
        let a = try balancer(), b = try balancer()
        let n = 10_000
        let first = try destinations(a, count: n, base: 10_000)
        let second = try destinations(b, count: n, base: 10_000)
        XCTAssertEqual(first.filter { $0 == nil }.count, 0, "every SYN was forwarded")
        let differ = zip(first, second).filter { $0 != $1 }.count
        print("maglev packets: \(n) tuples, \(differ) chosen differently by the two balancers")
        XCTAssertEqual(differ, 0)

        // The control plane's model of the datapath agrees: FlowHash, then the table.
        let members = Self.backends.map { Maglev.Member(endpoint: Endpoint(address: IPAddress($0)!, port: 8080), weight: 1) }
        let size = Maglev.tableSize(backends: members.count)
        let table = Maglev.build(members, size: size, seed: Self.seed)
        let vip = Endpoint(address: IPAddress(Self.vip)!, port: 80)
        var mismatches = 0
        for i in 0..<n {
            let hash = FlowHash.hash(FlowHash.key(client: syn(i, base: 10_000).client, vip: vip), seed: Self.seed)
            let predicted = members[Int(table[Int(hash % UInt32(size))])].endpoint.address.description
            if predicted != first[i] { mismatches += 1 }
        }
        XCTAssertEqual(mismatches, 0, "the datapath's choice is FlowHash and Maglev.build's")
        // Spread: each of the ten gets its share (10% ± 2).
        for backend in Self.backends {
            XCTAssertEqual(Double(first.filter { $0 == backend }.count) / Double(n), 0.1, accuracy: 0.02, backend)
        }
        // The table's size is listed.
        let json = try a.lab.ppctl(["service", "list", "-o", "json"]).stdout
        XCTAssertTrue(json.contains("\"tableSize\" : \(size)") || json.contains("\"tableSize\":\(size)"), json)
    }

    func testAnotherSeedChoosesOtherwise() throws {
        let a = try balancer(), b = try balancer(seed: Self.seed + 1)
        let first = try destinations(a, count: 1_000, base: 10_000)
        let second = try destinations(b, count: 1_000, base: 10_000)
        XCTAssertGreaterThan(zip(first, second).filter { $0 != $1 }.count, 500)
    }

    func testRemovingOrAddingOneOfTenBackendsMovesAtMostElevenPercentOfNewFlows() throws {
        let ten = try balancer(), changed = try balancer()
        let n = 10_000
        try changed.lab.ppctl(["backend", "delete", "\(Self.vip):80", "\(Self.backends[4]):8080"])
        let before = try destinations(ten, count: n, base: 10_000)
        let nine = try destinations(changed, count: n, base: 10_000)
        let removed = zip(before, nine).filter { $0 != $1 }.count
        print("maglev packets: removing 1 of 10 backends moved \(removed) of \(n) flows")
        XCTAssertLessThanOrEqual(Double(removed) / Double(n), 0.11)
        XCTAssertFalse(nine.contains(Self.backends[4]))

        // Back to ten (the removed one last), then an eleventh: new tuples.
        try changed.lab.sh("ip -n \(changed.lab.balancer) neigh replace 198.18.2.12 lladdr \(mac(MAC.backend)) dev l1 nud permanent")
        try changed.lab.ppctl(["backend", "add", "\(Self.vip):80", "\(Self.backends[4]):8080"])
        try ten.lab.ppctl(["backend", "delete", "\(Self.vip):80", "\(Self.backends[4]):8080"])
        try ten.lab.ppctl(["backend", "add", "\(Self.vip):80", "\(Self.backends[4]):8080"])
        try changed.lab.ppctl(["backend", "add", "\(Self.vip):80", "198.18.2.12:8080"])
        let tenAgain = try destinations(ten, count: n, base: 20_000)
        let eleven = try destinations(changed, count: n, base: 20_000)
        let added = zip(tenAgain, eleven).filter { $0 != $1 }.count
        print("maglev packets: adding an 11th backend moved \(added) of \(n) flows")
        XCTAssertLessThanOrEqual(Double(added) / Double(n), 0.11)
        XCTAssertTrue(eleven.contains("198.18.2.12"))
    }
}
