import CLibbpf
#if canImport(Glibc)
    import Glibc
#endif

/// A pinned per-CPU map with 32-bit keys, array or hash (such as `ppctl_stats`,
/// `ppctl_backend_stats`): one value per possible CPU at each key.
public final class PerCPUArray<Value: BitwiseCopyable> {
    /// Where the map is pinned.
    public let path: String
    let fd: Int32

    /// Opens the map pinned at `path`. Throws `.system` if it cannot be opened.
    public init(pinnedAt path: String) throws {
        self.path = path
        fd = try check(bpf_obj_get(path), "opening map \(path)")
    }

    deinit { close(fd) }

    /// The value of every possible CPU at `key`, in CPU order. The kernel lays the
    /// copies out at a stride of the value size rounded up to 8 bytes.
    public func values(at key: UInt32 = 0) throws -> [Value] {
        let cpus = Int(try check(libbpf_num_possible_cpus(), "counting CPUs"))
        let stride = (MemoryLayout<Value>.size + 7) & ~7
        var raw = [UInt8](repeating: 0, count: stride * cpus)
        var k = key
        let rc = raw.withUnsafeMutableBytes { bpf_map_lookup_elem(fd, &k, $0.baseAddress!) }
        try check(rc, "reading map \(path)")
        return raw.withUnsafeBytes { buf in
            (0..<cpus).map { buf.loadUnaligned(fromByteOffset: $0 * stride, as: Value.self) }
        }
    }

    /// The values at `key` summed over CPUs, for a struct whose fields are all __u64
    /// counters (ppctl_stats, ppctl_sock_stats).
    public func sum(at key: UInt32 = 0) throws -> Value {
        let all = try values(at: key)
        precondition(MemoryLayout<Value>.size % 8 == 0, "\(Value.self) is not made of __u64 counters")
        var raw = [UInt64](repeating: 0, count: MemoryLayout<Value>.size / 8)
        for v in all {
            withUnsafeBytes(of: v) { c in
                for i in raw.indices { raw[i] &+= c.loadUnaligned(fromByteOffset: i * 8, as: UInt64.self) }
            }
        }
        return raw.withUnsafeBytes { $0.loadUnaligned(as: Value.self) }
    }
}
