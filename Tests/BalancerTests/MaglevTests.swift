import Balancer
import DatapathABI
import XCTest
import ProxyProtocol

/// Maglev tables without root: how many flows move when a backend goes or comes,
/// the shares weights give, determinism, and the size rule.
final class MaglevTests: XCTestCase {
    func backends(_ n: Int, from first: Int = 0) -> [Maglev.Member] {
        (first..<(first + n)).map { i in
            Maglev.Member(endpoint: Endpoint(address: IPAddress("198.18.2.\(2 + i)")!, port: 8080), weight: 1)
        }
    }

    /// The endpoint each slot selects.
    func endpoints(_ members: [Maglev.Member], size: Int, seed: UInt32 = 0) -> [Endpoint?] {
        Maglev.build(members, size: size, seed: seed).map { $0 == Maglev.none ? nil : members[Int($0)].endpoint }
    }

    /// Share of the slots (= of uniformly hashed flows) whose endpoint differs.
    func moved(_ a: [Endpoint?], _ b: [Endpoint?]) -> Double {
        Double(zip(a, b).filter { $0 != $1 }.count) / Double(a.count)
    }

    // MARK: - Disruption

    func testRemovingOneOfTenMovesAtMostElevenPercent() {
        let ten = backends(10), size = Maglev.tableSize(backends: 10)
        let before = endpoints(ten, size: size)
        var worst = 0.0
        for gone in 0..<10 {
            var nine = ten
            nine.remove(at: gone)
            // The configured count goes to 9: the same size step (9...16).
            XCTAssertEqual(Maglev.tableSize(backends: 9), size)
            worst = max(worst, moved(before, endpoints(nine, size: size)))
        }
        print("maglev remap: remove 1 of 10 (M=\(size)): worst \(String(format: "%.2f", 100 * worst))% of flows")
        XCTAssertLessThanOrEqual(worst, 0.11)
        XCTAssertGreaterThanOrEqual(worst, 0.09, "at least the removed backend's own flows")
    }

    func testAddingOneToTenMovesAtMostElevenPercent() {
        let ten = backends(10), size = Maglev.tableSize(backends: 10)
        XCTAssertEqual(Maglev.tableSize(backends: 11), size)
        let before = endpoints(ten, size: size)
        var worst = 0.0
        for seed: UInt32 in [0, 1, 2, 3, 4] {
            let a = endpoints(ten, size: size, seed: seed), b = endpoints(ten + backends(1, from: 10), size: size, seed: seed)
            worst = max(worst, moved(a, b))
        }
        print("maglev remap: add 1 to 10 (M=\(size)): worst of 5 seeds \(String(format: "%.2f", 100 * worst))% of flows")
        XCTAssertLessThanOrEqual(worst, 0.11)
        XCTAssertEqual(before.count, size)
    }

    func testMarkingABackendDownMovesOnlyItsFlows() {
        var members = backends(10)
        let size = Maglev.tableSize(backends: 10)
        let before = endpoints(members, size: size)
        members[3].selectable = false
        let after = endpoints(members, size: size)
        let fraction = moved(before, after)
        XCTAssertLessThanOrEqual(fraction, 0.11)
        XCTAssertFalse(after.contains(members[3].endpoint))
    }

    /// Flows, not slots: 10,000 client tuples hashed as the datapath hashes them.
    func testFlowsFollowTheSlots() {
        let vip = Endpoint(address: IPAddress("198.18.0.10")!, port: 80)
        let ten = backends(10), nine = Array(ten.dropLast()), size = Maglev.tableSize(backends: 10)
        let a = Maglev.build(ten, size: size, seed: 42), b = Maglev.build(nine, size: size, seed: 42)
        var moved = 0
        for i in 0..<10_000 {
            let client = Endpoint(address: IPAddress("198.18.1.\(2 + i % 200)")!, port: UInt16(20_000 + i))
            let slot = Int(FlowHash.hash(FlowHash.key(client: client, vip: vip), seed: 42) % UInt32(size))
            if ten[Int(a[slot])].endpoint != nine[Int(b[slot])].endpoint { moved += 1 }
        }
        print("maglev remap: remove 1 of 10, 10,000 tuples: \(moved) moved")
        XCTAssertLessThanOrEqual(moved, 1_100)
    }

    // MARK: - Weights, identity, determinism

    func testSlotsFollowTheWeights() {
        var members = backends(4)
        for (i, w) in [1, 2, 3, 4].enumerated() { members[i].weight = w }
        let size = Maglev.tableSize(backends: 4)
        let table = Maglev.build(members, size: size, seed: 0)
        for i in 0..<4 {
            let share = Double(table.filter { $0 == UInt16(i) }.count) / Double(size)
            XCTAssertEqual(share, Double(i + 1) / 10, accuracy: 0.01, "backend \(i)")
        }
        members[0].weight = 10_000
        let heavy = Maglev.build(members, size: size, seed: 0)
        XCTAssertGreaterThan(heavy.filter { $0 == 0 }.count, size * 99 / 100)
    }

    func testSameConfigurationSameTableAndTheSeedChangesIt() {
        let ten = backends(10), size = Maglev.tableSize(backends: 10)
        XCTAssertEqual(Maglev.build(ten, size: size, seed: 9), Maglev.build(ten, size: size, seed: 9))
        XCTAssertNotEqual(Maglev.build(ten, size: size, seed: 9), Maglev.build(ten, size: size, seed: 10))
    }

    func testPermutationsComeFromTheBackendNotItsIndex() {
        let ten = backends(10), size = Maglev.tableSize(backends: 10)
        let shuffled = Array(ten[5...] + ten[..<5])
        // Only the order of turns changes: nearly every slot keeps its endpoint.
        XCTAssertLessThan(moved(endpoints(ten, size: size), endpoints(shuffled, size: size)), 0.05)
    }

    func testEveryBackendLeftOutGivesNone() {
        var members = backends(3)
        for i in members.indices { members[i].selectable = false }
        XCTAssertEqual(Set(Maglev.build(members, size: 401, seed: 0)), [Maglev.none])
    }

    // MARK: - Size

    func testSizeRuleIsAPrimeLadderWithHeadroom() {
        let expected = [
            1: 1009, 2: 2003, 3: 4001, 4: 4001, 5: 8009, 8: 8009, 9: 16001, 10: 16001, 11: 16001, 16: 16001,
            17: 32003, 64: 64007, 100: 128021, 129: 131071, 256: 131071
        ]
        for (n, size) in expected {
            XCTAssertEqual(Maglev.tableSize(backends: n), size, "\(n) backends")
            XCTAssertTrue(Maglev.isValidSize(size))
            XCTAssertGreaterThanOrEqual(size, 100 * n)
        }
        XCTAssertTrue(Maglev.isValidSize(65_537))
        XCTAssertFalse(Maglev.isValidSize(65_536))
        XCTAssertFalse(Maglev.isValidSize(Maglev.maxSize + 2))
    }

    func testBuildTimeOfTheLargestDefaultTable() {
        let members = (0..<256).map { i in
            Maglev.Member(endpoint: Endpoint(address: IPAddress("198.18.\(2 + i / 250).\(2 + i % 250)")!, port: 8080), weight: 1)
        }
        let start = DispatchTime.now()
        for size in [16001, 65537, 131071] {
            let t0 = DispatchTime.now()
            let n = size == 16001 ? 10 : 256
            _ = Maglev.build(Array(members.prefix(n)), size: size, seed: 0)
            let ms = Double(DispatchTime.now().uptimeNanoseconds - t0.uptimeNanoseconds) / 1e6
            print("maglev build: \(n) backends, M=\(size): \(String(format: "%.2f", ms)) ms")
        }
        XCTAssertLessThan(Double(DispatchTime.now().uptimeNanoseconds - start.uptimeNanoseconds) / 1e9, 5)
    }
}
