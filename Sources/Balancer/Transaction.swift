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

    /// Switches service `id` to a new table of `slots` (nil: no table). Undo: the
    /// table it had (kept alive by its handle), or none.
    func setTable(_ tables: any TableMap, _ id: UInt32, _ slots: [UInt16]?) throws {
        let previous = tables.current(id)
        if let slots { try tables.install(id, slots: slots) } else { try tables.restore(id, nil) }
        undo.append { try tables.restore(id, previous) }
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
