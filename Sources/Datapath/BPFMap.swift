import CLibbpf
#if canImport(Glibc)
    import Glibc
#endif

/// A typed handle on a pinned BPF map. `Key` and `Value` are the C structs of
/// ppctl_abi.h as Swift imports them; their sizes must be the map's key and value
/// sizes (`init` checks).
public final class BPFMap<Key: BitwiseCopyable, Value: BitwiseCopyable>: KeyValueMap {
    /// Where the map is pinned.
    public let path: String
    let fd: Int32
    /// The map's max_entries.
    public let capacity: Int
    /// BPF_MAP_TYPE_* of the map.
    let type: UInt32

    /// Opens the map pinned at `path`. Throws `.system` if it cannot be opened and
    /// `.incompatiblePin` if its key or value size is not that of `Key`/`Value`.
    public init(pinnedAt path: String) throws {
        self.path = path
        fd = try check(bpf_obj_get(path), "opening map \(path)")
        var info = bpf_map_info()
        var len = UInt32(MemoryLayout<bpf_map_info>.size)
        if bpf_obj_get_info_by_fd(fd, &info, &len) != 0 {
            let e = errno
            close(fd)
            throw DatapathError.system("reading the description of map \(path)", errno: e)
        }
        var differences: [String] = []
        if Int(info.key_size) != MemoryLayout<Key>.size { differences.append("key size \(info.key_size), not \(MemoryLayout<Key>.size)") }
        if Int(info.value_size) != MemoryLayout<Value>.size {
            differences.append("value size \(info.value_size), not \(MemoryLayout<Value>.size)")
        }
        guard differences.isEmpty else {
            close(fd)
            throw DatapathError.incompatiblePin(map: String(path.split(separator: "/").last ?? ""), differences.joined(separator: ", "))
        }
        capacity = Int(info.max_entries)
        type = info.type
    }

    deinit { close(fd) }

    // MARK: - Elements

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
        if rc < 0 && rc != -ENOENT && !(rc == -1 && errno == ENOENT) { try check(rc, "deleting from map \(path)") }
    }

    // MARK: - Iteration

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

    /// Every entry, read in batches of up to 4096 (a few system calls for the whole
    /// map) where the kernel supports it for the map type, else key by key.
    public func entries() -> [(key: Key, value: Value)] {
        batchEntries() ?? keys().compactMap { k in lookup(k).map { (k, $0) } }
    }

    /// BPF_MAP_LOOKUP_BATCH over the whole map; nil if the kernel refuses (the
    /// caller then iterates key by key). Elements are packed at the key and value
    /// sizes, which `init` checked against `Key` and `Value`.
    private func batchEntries() -> [(key: Key, value: Value)]? {
        let keySize = MemoryLayout<Key>.size, valueSize = MemoryLayout<Value>.size
        var chunk = min(4096, max(capacity, 1))
        // The position token: a bucket index for hash maps, a key for arrays.
        var token = [UInt8](repeating: 0, count: max(keySize, 8)), nextToken = token
        var first = true
        var result: [(key: Key, value: Value)] = []
        while true {
            let keyBytes = UnsafeMutableRawPointer.allocate(byteCount: chunk * keySize, alignment: 8)
            let valueBytes = UnsafeMutableRawPointer.allocate(byteCount: chunk * valueSize, alignment: 8)
            defer {
                keyBytes.deallocate()
                valueBytes.deallocate()
            }
            var count = UInt32(chunk)
            let rc = token.withUnsafeMutableBytes { inToken in
                nextToken.withUnsafeMutableBytes { outToken in
                    bpf_map_lookup_batch(
                        fd, first ? nil : inToken.baseAddress, outToken.baseAddress,
                        keyBytes, valueBytes, &count, nil)
                }
            }
            let err: Int32 = rc == 0 ? 0 : (rc == -1 ? errno : -rc)
            if err == ENOSPC && chunk < 1 << 20 {
                chunk *= 2  // a hash bucket larger than the chunk: again, with more room
                continue
            }
            guard err == 0 || err == ENOENT else { return nil }
            for i in 0..<Int(count) {
                result.append(
                    (
                        keyBytes.loadUnaligned(fromByteOffset: i * keySize, as: Key.self),
                        valueBytes.loadUnaligned(fromByteOffset: i * valueSize, as: Value.self)
                    ))
            }
            if err == ENOENT { return result }  // the end of the map
            token = nextToken
            first = false
        }
    }
}
