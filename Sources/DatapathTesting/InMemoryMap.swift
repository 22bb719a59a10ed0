import Datapath
#if canImport(Glibc)
    import Glibc
#endif

/// A `KeyValueMap` in memory, for unit tests that run without root (this module is
/// for tests only, after swift-nio's NIOEmbedded: nothing shipped depends on it): a
/// hash map, or an array
/// map (every index present from the start, zeroed, and not deletable, as in the
/// kernel). Keys are compared by their bytes (the C structs of the ABI are not
/// Hashable); iteration follows insertion order. It can be told to fail, to
/// exercise rollback.
public final class InMemoryMap<Key: BitwiseCopyable, Value>: KeyValueMap {
    private var storage: [[UInt8]: (Key, Value)] = [:]
    private var order: [[UInt8]] = []
    private var isArray = false
    /// Entries the map holds at most; an insert beyond fails with E2BIG.
    public let capacity: Int
    /// Makes the update after this many successful ones fail with ENOMEM
    /// (0: the next one). nil: never.
    public var failUpdate: Int?
    /// Makes the delete after this many successful ones fail with EIO. nil: never.
    public var failDelete: Int?

    /// An empty hash map of at most `capacity` entries.
    public init(capacity: Int = .max) { self.capacity = capacity }

    /// An array map of `count` elements (keys 0..<count), each `zero`: updates
    /// beyond the last index fail with E2BIG, deletes with EINVAL.
    public init(arrayOf count: Int, zero: Value) where Key == UInt32 {
        capacity = count
        isArray = true
        for index in 0..<UInt32(count) {
            let b = bytes(index)
            storage[b] = (index, zero)
            order.append(b)
        }
    }

    private func bytes(_ key: Key) -> [UInt8] { withUnsafeBytes(of: key) { Array($0) } }

    public func lookup(_ key: Key) -> Value? { storage[bytes(key)]?.1 }

    public func update(_ key: Key, _ value: Value, mode: UpdateMode) throws {
        if let n = failUpdate {
            failUpdate = n == 0 ? nil : n - 1
            if n == 0 { throw DatapathError.system("updating in-memory map", errno: ENOMEM) }
        }
        let b = bytes(key)
        let exists = storage[b] != nil
        if mode == .noExist && exists { throw DatapathError.system("updating in-memory map", errno: EEXIST) }
        if mode == .exist && !exists { throw DatapathError.system("updating in-memory map", errno: ENOENT) }
        if !exists {
            guard storage.count < capacity else { throw DatapathError.system("updating in-memory map", errno: E2BIG) }
            order.append(b)
        }
        storage[b] = (key, value)
    }

    public func delete(_ key: Key) throws {
        if let n = failDelete {
            failDelete = n == 0 ? nil : n - 1
            if n == 0 { throw DatapathError.system("deleting from in-memory map", errno: EIO) }
        }
        if isArray { throw DatapathError.system("deleting from in-memory array", errno: EINVAL) }
        let b = bytes(key)
        guard storage.removeValue(forKey: b) != nil else { return }
        order.removeAll { $0 == b }
    }

    public func keys() -> [Key] { order.compactMap { storage[$0]?.0 } }

    /// Number of entries.
    public var count: Int { storage.count }
}

extension InMemoryMap where Value: BitwiseCopyable {
    /// Every entry as key bytes to value bytes: equal snapshots mean equal maps.
    public func snapshot() -> [[UInt8]: [UInt8]] {
        storage.mapValues { withUnsafeBytes(of: $0.1) { Array($0) } }
    }
}
