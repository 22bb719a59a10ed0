import CLibbpf
import DatapathABI
#if canImport(Glibc)
    import Glibc
#endif

/// A pinned map whose key or value layout changed: the pin the previous layout used
/// and how each of its entries becomes one of the map that replaces it. A changed
/// map gets a new name (`ppctl_conntrack_v2`, after Cilium) and `PPCTL_ABI_VERSION`
/// grows, so that `ppctl attach` of the new build finds the old pin beside the new
/// one and moves services, backends and live connections over (no `detach`).
public struct Migration: Sendable {
    /// The pin of the previous layout, in the instance directory.
    public let from: String
    /// The map that replaces it (created by the new object).
    public let to: Maps.Name
    /// One old entry (key, value: raw bytes at the old sizes) as the new map's, or
    /// nil to drop it.
    public let convert: @Sendable (_ key: [UInt8], _ value: [UInt8]) -> (key: [UInt8], value: [UInt8])?

    public init(
        from: String, to: Maps.Name,
        convert: @escaping @Sendable (_ key: [UInt8], _ value: [UInt8]) -> (key: [UInt8], value: [UInt8])?
    ) {
        self.from = from
        self.to = to
        self.convert = convert
    }

    /// Every migration this build knows, oldest first.
    public static let all: [Migration] = [statsV2, configV3, maglevV3]

    /// ABI 2: `struct ppctl_stats` grew from 20 counters to 25 (fwd_errors split into
    /// named drop and pass reasons, appended). Each CPU's old value keeps its
    /// counters; the new ones start at zero.
    public static let statsV2 = Migration(from: "ppctl_stats", to: .stats) { key, value in
        let oldSize = 8 * 20, newSize = MemoryLayout<ppctl_stats>.size
        guard oldSize < newSize, !value.isEmpty, value.count % oldSize == 0 else { return nil }
        var out: [UInt8] = []
        out.reserveCapacity(value.count / oldSize * newSize)
        for start in stride(from: 0, to: value.count, by: oldSize) {
            out += value[start..<start + oldSize]
            out += [UInt8](repeating: 0, count: newSize - oldSize)
        }
        return (key, out)
    }

    /// ABI 3: `struct ppctl_config` grew from 40 bytes to 48 (hash_seed and a reserved
    /// word, appended) and is pinned as `ppctl_config_v3`. Every setting is kept; the
    /// seed starts at 0 (`attach --hash-seed` sets it).
    public static let configV3 = Migration(from: "ppctl_config", to: .config) { key, value in
        let oldSize = 40, newSize = MemoryLayout<ppctl_config>.size
        guard value.count == oldSize, oldSize < newSize else { return nil }
        return (key, value + [UInt8](repeating: 0, count: newSize - oldSize))
    }

    /// ABI 3: the 256-slot rings (`ppctl_rings`) gave way to Maglev tables
    /// (`ppctl_maglev`). No entry is converted: the attach rebuilds every service's
    /// table from its services and backends (`Loader.attach`'s `prepare`) before the
    /// new programs run, and the old pin goes.
    public static let maglevV3 = Migration(from: "ppctl_rings", to: .maglev) { _, _ in nil }

    /// The path of the old pin in `instance`.
    func oldPin(_ instance: Instance) -> String { instance.directory + "/" + from }

    /// Copies the old map's entries into the new one, converted. `replacing`: every
    /// entry (before the new programs run); else only keys the new map lacks (after
    /// they run: the connections the old programs opened meanwhile; arrays, which
    /// only the control plane writes, are left alone). Returns the entries written.
    @discardableResult
    func copy(instance: Instance, replacing: Bool) throws -> Int {
        let old = try check(bpf_obj_get(oldPin(instance)), "opening \(from) to migrate it")
        defer { close(old) }
        let new = try check(bpf_obj_get(instance.pin(to)), "opening \(to.rawValue) to migrate \(from)")
        defer { close(new) }
        let oldInfo = try Self.info(old, from), newInfo = try Self.info(new, to.rawValue)
        let isArray = newInfo.type == BPF_MAP_TYPE_ARRAY.rawValue || newInfo.type == BPF_MAP_TYPE_PERCPU_ARRAY.rawValue
        if !replacing && isArray { return 0 }
        let perCPU = [BPF_MAP_TYPE_PERCPU_ARRAY, BPF_MAP_TYPE_PERCPU_HASH, BPF_MAP_TYPE_LRU_PERCPU_HASH]
            .contains { $0.rawValue == oldInfo.type }
        // Per-CPU values are one per possible CPU, each rounded up to 8 bytes.
        let cpus = perCPU ? Int(libbpf_num_possible_cpus()) : 1
        let oldValueSize = perCPU ? (Int(oldInfo.value_size) + 7) / 8 * 8 * cpus : Int(oldInfo.value_size)
        let newValueSize = perCPU ? (Int(newInfo.value_size) + 7) / 8 * 8 * cpus : Int(newInfo.value_size)

        var key = [UInt8](repeating: 0, count: Int(oldInfo.key_size))
        var next = key
        var value = [UInt8](repeating: 0, count: oldValueSize)
        var written = 0
        var rc = bpf_map_get_next_key(old, nil, &next)
        while rc == 0 {
            key = next
            if bpf_map_lookup_elem(old, &key, &value) == 0, let (k, v) = convert(key, value) {
                guard k.count == Int(newInfo.key_size), v.count == newValueSize else {
                    throw DatapathError.objectMismatch("migrating \(from): an entry converted to the wrong size")
                }
                var newKey = k, newValue = v
                let flags = UInt64(replacing ? BPF_ANY : BPF_NOEXIST)
                let updated = bpf_map_update_elem(new, &newKey, &newValue, flags)
                if updated == 0 {
                    written += 1
                } else if !(updated == -EEXIST || (updated == -1 && errno == EEXIST)) {
                    try check(updated, "copying an entry of \(from) to \(to.rawValue)")
                }
            }
            rc = bpf_map_get_next_key(old, &key, &next)
        }
        return written
    }

    private static func info(_ fd: Int32, _ name: String) throws -> bpf_map_info {
        var info = bpf_map_info()
        var len = UInt32(MemoryLayout<bpf_map_info>.size)
        try check(bpf_obj_get_info_by_fd(fd, &info, &len), "reading the description of map \(name)")
        return info
    }
}
