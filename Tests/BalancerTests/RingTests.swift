import Balancer
import XCTest

/// The endpoint ring: exact shares, spread out, the same every time.
final class RingTests: XCTestCase {
    func counts(_ ring: [Int], _ n: Int) -> [Int] {
        var c = Array(repeating: 0, count: n)
        for slot in ring { c[slot] += 1 }
        return c
    }

    func testSlotsFollowWeights() {
        XCTAssertEqual(counts(Ring.build(weights: [1, 3]), 2), [64, 192])
        XCTAssertEqual(counts(Ring.build(weights: [1, 1, 1]), 3), [86, 85, 85], "largest remainder, ties to the first")
        XCTAssertEqual(counts(Ring.build(weights: [5]), 1), [256])
        XCTAssertEqual(counts(Ring.build(weights: [10_000, 1]), 2), [255, 1], "a weight too small for a slot still gets one")
    }

    func testEveryShareIsTheExactShareRounded() {
        // Deterministic pseudo-random weight sets of 1...300 backends.
        var x: UInt64 = 0x9E37_79B9_7F4A_7C15
        func next(_ bound: Int) -> Int { x = x &* 6364136223846793005 &+ 1442695040888963407; return Int(x >> 33) % bound }
        for _ in 0..<300 {
            let n = 1 + next(300)
            let weights = (0..<n).map { _ in 1 + next(next(2) == 0 ? 10 : 10_000) }
            let ring = Ring.build(weights: weights)
            XCTAssertEqual(ring.count, Ring.size)
            let c = counts(ring, n)
            let total = Double(weights.reduce(0, +))
            if n <= Ring.size {
                XCTAssertTrue(c.allSatisfy { $0 >= 1 }, "every backend has a slot: \(weights)")
            }
            if c.allSatisfy({ $0 > 1 }) {
                // No minimum-slot correction happened: plain largest remainder.
                for i in 0..<n {
                    XCTAssertLessThan(abs(Double(c[i]) - Double(Ring.size) * Double(weights[i]) / total), 1.0, "\(weights)")
                }
            }
        }
    }

    func testSlotsAreInterleavedNotInRuns() {
        let equal = Ring.build(weights: [1, 1, 1, 1])
        XCTAssertEqual(equal, (0..<256).map { $0 % 4 }, "equal weights: round robin")
        for weights in [[1, 3], [2, 3, 5], [1, 1, 8], [100, 1, 1, 1]] {
            let ring = Ring.build(weights: weights)
            var longest = 0, run = 0
            for (i, v) in ring.enumerated() { run = i > 0 && ring[i - 1] == v ? run + 1 : 1; longest = max(longest, run) }
            let heaviest = Double(weights.max()!) / Double(weights.reduce(0, +) - weights.max()!)
            XCTAssertLessThanOrEqual(Double(longest), 2 * heaviest.rounded(.up), "\(weights): runs of \(longest)")
        }
    }

    func testTheRingIsDeterministic() {
        let weights = [10_000] + Array(repeating: 1, count: 99)
        let ring = Ring.build(weights: weights)
        XCTAssertEqual(Set(ring).count, 100)
        XCTAssertEqual(ring, Ring.build(weights: weights))
    }

    func testNoBackendsNoSlots() {
        XCTAssertEqual(Ring.build(weights: []), [])
    }

    func testAFullServiceHasOneSlotPerBackend() {
        XCTAssertEqual(Ring.build(weights: Array(repeating: 7, count: Ring.size)), Array(0..<Ring.size))
    }
}
