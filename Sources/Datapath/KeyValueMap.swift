import CLibbpf

// MARK: - Update modes

/// How an update treats an existing key (BPF_ANY, BPF_NOEXIST, BPF_EXIST).
public enum UpdateMode: Sendable {
    /// Create the key or overwrite it.
    case any
    /// Create the key; fail with EEXIST if it is there.
    case noExist
    /// Overwrite the key; fail with ENOENT if it is not there.
    case exist

    var flags: UInt64 {
        switch self {
        case .any: return UInt64(BPF_ANY)
        case .noExist: return UInt64(BPF_NOEXIST)
        case .exist: return UInt64(BPF_EXIST)
        }
    }
}

// MARK: - The map protocol

/// A map the control plane reads and writes: a pinned BPF map (`BPFMap`), or an
/// in-memory stand-in for tests that run without root (`InMemoryMap`, in the
/// DatapathTesting module).
public protocol KeyValueMap<Key, Value>: AnyObject {
    associatedtype Key
    associatedtype Value
    /// The value at `key`, or nil if there is none.
    func lookup(_ key: Key) -> Value?
    /// Writes `value` at `key`. Throws `DatapathError.system` if the map refuses
    /// (full, or `mode` not met: EEXIST, ENOENT).
    func update(_ key: Key, _ value: Value, mode: UpdateMode) throws
    /// Removes `key`; removing a missing key is not an error.
    func delete(_ key: Key) throws
    /// Every key, in the map's order.
    func keys() -> [Key]
    /// Every entry, in the map's order; entries deleted meanwhile are skipped.
    func entries() -> [(key: Key, value: Value)]
}

extension KeyValueMap {
    /// Keys, then one lookup per key.
    public func entries() -> [(key: Key, value: Value)] {
        keys().compactMap { k in lookup(k).map { (k, $0) } }
    }
}
