import Datapath
#if canImport(Glibc)
    import Glibc
#endif

/// A `TableMap` in memory, for unit tests: each service's table is an array of
/// slots, swapped whole as the map of maps swaps tables. It can be told to fail,
/// to exercise rollback.
public final class InMemoryTableMap: TableMap {
    final class Table {
        let slots: [UInt16]
        init(_ slots: [UInt16]) { self.slots = slots }
    }

    private var tables: [UInt32: Table] = [:]
    /// Makes the switch after this many successful ones fail with ENOMEM
    /// (0: the next one). nil: never.
    public var failInstall: Int?
    /// Tables installed so far (successfully).
    public private(set) var installs = 0

    public init() {}

    public func slots(_ service: UInt32) -> [UInt16]? { tables[service]?.slots }
    public func size(_ service: UInt32) -> Int? { tables[service]?.slots.count }
    public func current(_ service: UInt32) -> AnyObject? { tables[service] }

    public func switchTables(_ changes: [(service: UInt32, slots: [UInt16]?)]) throws {
        if let n = failInstall {
            if n == 0 {
                failInstall = nil
                throw DatapathError.system("switching tables (injected)", errno: ENOMEM)
            }
            failInstall = n - 1
        }
        for change in changes {
            tables[change.service] = change.slots.map(Table.init)
            if change.slots != nil { installs += 1 }
        }
    }

    public func restore(_ items: [(service: UInt32, table: AnyObject?)]) throws {
        for item in items { tables[item.service] = item.table as? Table }
    }

    /// Every table as service id bytes to slot bytes (the form of
    /// `InMemoryMap.snapshot`): equal snapshots mean equal tables.
    public func snapshot() -> [[UInt8]: [UInt8]] {
        var out: [[UInt8]: [UInt8]] = [:]
        for (id, t) in tables { out[withUnsafeBytes(of: id) { Array($0) }] = t.slots.withUnsafeBytes { Array($0) } }
        return out
    }
}
