import CLibbpf
#if canImport(Glibc)
import Glibc
#endif

/// How an update treats an existing key.
public enum UpdateMode: Sendable {
    case any, noExist, exist
    var flags: UInt64 {
        switch self {
        case .any: return UInt64(BPF_ANY)
        case .noExist: return UInt64(BPF_NOEXIST)
        case .exist: return UInt64(BPF_EXIST)
        }
    }
}

/// A map the control plane reads and writes: the pinned BPF map, or an in-memory
/// stand-in for tests that run without root.
public protocol KeyValueMap<Key, Value>: AnyObject {
    associatedtype Key
    associatedtype Value
    /// The value at `key`, or nil.
    func lookup(_ key: Key) -> Value?
    /// Writes `value` at `key`. Throws if the map refuses (full, mode not met).
    func update(_ key: Key, _ value: Value, mode: UpdateMode) throws
    /// Removes `key`; removing a missing key is not an error.
    func delete(_ key: Key) throws
    /// Every key, in the map's order.
    func keys() -> [Key]
}

/// A typed handle on a pinned BPF map. Key and Value are the C structs of
/// ppctl_abi.h as Swift imports them.
public final class BPFMap<Key: BitwiseCopyable, Value: BitwiseCopyable>: KeyValueMap {
    public let path: String
    let fd: Int32

    /// Opens the map pinned at `path`.
    public init(pinnedAt path: String) throws {
        self.path = path
        fd = try check(bpf_obj_get(path), "opening map \(path)")
    }

    deinit { close(fd) }

    public func lookup(_ key: Key) -> Value? {
        var k = key
        return withUnsafeTemporaryAllocation(of: Value.self, capacity: 1) { v in
            bpf_map_lookup_elem(fd, &k, v.baseAddress!) == 0 ? v[0] : nil
        }
    }

    public func update(_ key: Key, _ value: Value, mode: UpdateMode = .any) throws {
        var k = key, v = value
        try check(bpf_map_update_elem(fd, &k, &v, mode.flags), "updating map \(path)")
    }

    public func delete(_ key: Key) throws {
        var k = key
        let rc = bpf_map_delete_elem(fd, &k)
        if rc < 0 && errno != ENOENT && rc != -ENOENT { try check(rc, "deleting from map \(path)") }
    }

    public func keys() -> [Key] {
        var result: [Key] = []
        withUnsafeTemporaryAllocation(of: Key.self, capacity: 2) { buf in
            let cur = buf.baseAddress!, next = buf.baseAddress! + 1
            var rc = bpf_map_get_next_key(fd, nil, next)
            while rc == 0 {
                result.append(next.pointee)
                cur.pointee = next.pointee
                rc = bpf_map_get_next_key(fd, cur, next)
            }
        }
        return result
    }

    /// Every entry; entries deleted while iterating are skipped.
    public func entries() -> [(key: Key, value: Value)] {
        keys().compactMap { k in lookup(k).map { (k, $0) } }
    }

    /// The map's max_entries.
    public var capacity: Int {
        var info = bpf_map_info()
        var len = UInt32(MemoryLayout<bpf_map_info>.size)
        return bpf_obj_get_info_by_fd(fd, &info, &len) == 0 ? Int(info.max_entries) : 0
    }
}

/// A per-CPU array map with one element at key 0, summed over CPUs by the caller.
public final class PerCPUArray<Value: BitwiseCopyable> {
    public let path: String
    let fd: Int32

    public init(pinnedAt path: String) throws {
        self.path = path
        fd = try check(bpf_obj_get(path), "opening map \(path)")
    }

    deinit { close(fd) }

    /// The value of every possible CPU at `key`.
    public func values(at key: UInt32 = 0) throws -> [Value] {
        let cpus = Int(try check(libbpf_num_possible_cpus(), "counting CPUs"))
        let stride = (MemoryLayout<Value>.size + 7) & ~7
        var raw = [UInt8](repeating: 0, count: stride * cpus)
        var k = key
        try raw.withUnsafeMutableBytes { buf in
            try check(bpf_map_lookup_elem(fd, &k, buf.baseAddress!), "reading map \(path)")
        }
        return (0..<cpus).map { cpu in
            raw.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: cpu * stride, as: Value.self) }
        }
    }
}

/// An in-memory map for tests and dry runs, keyed by the key's bytes (the C structs
/// of the ABI are not Hashable).
public final class InMemoryMap<Key: BitwiseCopyable, Value>: KeyValueMap {
    private var storage: [[UInt8]: (Key, Value)] = [:]
    private var order: [[UInt8]] = []
    public let capacity: Int
    /// Makes the next update throw, to exercise rollback.
    public var failNextUpdate = false

    public init(capacity: Int = .max) { self.capacity = capacity }

    private func bytes(_ key: Key) -> [UInt8] { withUnsafeBytes(of: key) { Array($0) } }

    public func lookup(_ key: Key) -> Value? { storage[bytes(key)]?.1 }

    public func update(_ key: Key, _ value: Value, mode: UpdateMode) throws {
        if failNextUpdate {
            failNextUpdate = false
            throw DatapathError.system("updating in-memory map", errno: ENOMEM)
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
        let b = bytes(key)
        storage[b] = nil
        order.removeAll { $0 == b }
    }

    public func keys() -> [Key] { order.compactMap { storage[$0]?.0 } }

    /// Number of entries.
    public var count: Int { storage.count }
}
