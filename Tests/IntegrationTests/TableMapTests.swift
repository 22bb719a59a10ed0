import Datapath
import DatapathABI
import XCTest

/// The pinned map of Maglev tables (BPFTableMap) as a failed change uses it: tables
/// switched in, then put back as they were, services without a table included.
final class TableMapTests: XCTestCase {
    func testRestorePutsBackTheTablesAndTheirAbsence() throws {
        let lab = try Lab()
        defer { lab.close() }
        try lab.attach()
        let maglev = try Maps(Instance(netns: lab.balancer, pinRoot: lab.pinRoot)).maglev
        // 3,000 ids no service uses (two chunks of the batched update), and one with a table.
        let fresh = (UInt32(5000)..<8000).map { $0 }
        try maglev.switchTables([(4999, [0, 1, 0])])
        XCTAssertEqual(maglev.slots(4999), [0, 1, 0])
        let before = ([4999] + fresh).map { (service: $0, table: maglev.current($0)) }
        XCTAssertEqual(before.filter { $0.table == nil }.count, fresh.count)

        try maglev.switchTables(([4999] + fresh).map { (service: $0, slots: [1, 0, 1, 1, 0] as [UInt16]?) })
        XCTAssertEqual(maglev.slots(4999), [1, 0, 1, 1, 0])
        XCTAssertEqual(fresh.filter { maglev.size($0) == 5 }.count, fresh.count)

        try maglev.restore(before)
        XCTAssertEqual(maglev.slots(4999), [0, 1, 0], "the table it had")
        XCTAssertEqual(fresh.filter { maglev.size($0) != nil || maglev.slots($0) != nil }, [], "no table again")
    }
}
