import Datapath

/// Writes to maps that can be undone: each step records how to put back what was
/// there, and `rollBack()` replays those records newest first. The caller holds the
/// instance lock, so nobody else changes the entries meanwhile.
final class Transaction {
    private var undo: [() throws -> Void] = []

    /// Creates `key`; fails (EEXIST) if it exists. Undo: delete it.
    func insert<K, V>(_ map: any KeyValueMap<K, V>, _ key: K, _ value: V) throws {
        try map.update(key, value, mode: .noExist)
        undo.append { try map.delete(key) }
    }

    /// Creates or overwrites `key`. Undo: the previous value, or delete.
    func write<K, V>(_ map: any KeyValueMap<K, V>, _ key: K, _ value: V) throws {
        let previous = map.lookup(key)
        try map.update(key, value, mode: .any)
        undo.append {
            if let previous { try map.update(key, previous, mode: .any) } else { try map.delete(key) }
        }
    }

    /// Deletes `key` if present. Undo: put it back.
    func remove<K, V>(_ map: any KeyValueMap<K, V>, _ key: K) throws {
        guard let previous = map.lookup(key) else { return }
        try map.delete(key)
        undo.append { try map.update(key, previous, mode: .any) }
    }

    /// Tables staged by `stageTable`, switched by `flushTables`.
    private var staged: [(service: UInt32, slots: [UInt16]?)] = []

    /// Notes that service `id` gets a new table of `slots` (nil: none) at the next
    /// `flushTables`, which switches every staged table in one step.
    func stageTable(_ id: UInt32, _ slots: [UInt16]?) {
        staged.append((id, slots))
    }

    /// Switches the staged tables. Undo: each service's previous table (kept alive
    /// by its handle), or none.
    func flushTables(_ tables: any TableMap) throws {
        guard !staged.isEmpty else { return }
        let changes = staged
        staged = []
        let previous = changes.map { (service: $0.service, table: tables.current($0.service)) }
        // Recorded first: a switch that fails half way is put back whole.
        undo.append { try tables.restore(previous) }
        try tables.switchTables(changes)
    }

    /// Switches service `id` to a new table of `slots` (nil: no table) now.
    func setTable(_ tables: any TableMap, _ id: UInt32, _ slots: [UInt16]?) throws {
        stageTable(id, slots)
        try flushTables(tables)
    }

    /// Undoes every step, newest first. An undo step that fails (the kernel refusing
    /// to restore what it held a moment ago) does not stop the others.
    func rollBack() {
        for step in undo.reversed() { try? step() }
        undo.removeAll()
    }

    /// Runs `body` in a new transaction; if it throws, rolls back and rethrows.
    static func run(_ body: (Transaction) throws -> Void) throws {
        let tx = Transaction()
        do {
            try body(tx)
        } catch {
            tx.rollBack()
            throw error
        }
    }
}
