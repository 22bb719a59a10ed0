import CLibbpf
import DatapathABI
#if canImport(Glibc)
import Glibc
#endif

/// The per-service Maglev tables (ppctl_maglev): one table of slots per service id.
/// A table is never changed in place: `install` builds a new one and switches the
/// service to it in one step, so the datapath sees the old table or the new one.
/// A pinned map of maps in production (`BPFTableMap`), an in-memory stand-in in
/// unit tests (`InMemoryTableMap`, in the DatapathTesting module).
public protocol TableMap: AnyObject {
    /// The service's table, slot by slot; nil if it has none.
    func slots(_ service: UInt32) -> [UInt16]?
    /// The size of the service's table; nil if it has none.
    func size(_ service: UInt32) -> Int?
    /// Makes a table of `slots` the service's (replacing any). Throws
    /// `DatapathError.system` if the table cannot be made or switched to (the
    /// service keeps the table it had).
    func install(_ service: UInt32, slots: [UInt16]) throws
    /// The service's current table, kept alive by the returned handle, to give back
    /// to `restore`; nil if it has none.
    func current(_ service: UInt32) -> AnyObject?
    /// Switches the service back to a table `current` returned (nil: no table).
    func restore(_ service: UInt32, _ table: AnyObject?) throws
    /// The services that have a table.
    func services() -> [UInt32]
}

/// ppctl_maglev, the pinned array of maps: each service's table is a BPF array
/// (BPF_F_INNER_MAP) of 8-byte elements, the header (`ppctl_maglev_head`: the
/// size M) at 0, then four u16 slots per element. Tables are created here at their
/// size and switched in with one update of the outer map.
public final class BPFTableMap: TableMap {
    /// Where the outer map is pinned.
    public let path: String
    let fd: Int32
    static let perElement = Int(PPCTL_MAGLEV_SLOTS_PER_ELEM)

    /// Opens the map of maps pinned at `path`. Throws `.system`.
    public init(pinnedAt path: String) throws {
        self.path = path
        fd = try check(bpf_obj_get(path), "opening map \(path)")
    }

    deinit { close(fd) }

    /// An open table: its descriptor, closed when the handle goes.
    final class Table {
        let fd: Int32
        init(fd: Int32) { self.fd = fd }
        deinit { close(fd) }
    }

    func table(_ service: UInt32) -> Table? {
        var key = service, id: UInt32 = 0
        guard bpf_map_lookup_elem(fd, &key, &id) == 0 else { return nil }
        let inner = bpf_map_get_fd_by_id(id)
        return inner >= 0 ? Table(fd: inner) : nil
    }

    public func current(_ service: UInt32) -> AnyObject? { table(service) }

    public func size(_ service: UInt32) -> Int? {
        guard let t = table(service) else { return nil }
        var key: UInt32 = 0, head = ppctl_maglev_head()
        return bpf_map_lookup_elem(t.fd, &key, &head) == 0 ? Int(head.size) : nil
    }

    public func slots(_ service: UInt32) -> [UInt16]? {
        guard let t = table(service) else { return nil }
        var key: UInt32 = 0, head = ppctl_maglev_head()
        guard bpf_map_lookup_elem(t.fd, &key, &head) == 0 else { return nil }
        let size = Int(head.size), elements = (size + Self.perElement - 1) / Self.perElement
        var slots = [UInt16](repeating: 0, count: elements * Self.perElement)
        var element = ppctl_maglev_slots()
        for e in 0..<elements {
            key = UInt32(1 + e)
            guard bpf_map_lookup_elem(t.fd, &key, &element) == 0 else { return nil }
            withUnsafeBytes(of: element.backend) { raw in
                for j in 0..<Self.perElement { slots[e * Self.perElement + j] = raw.load(fromByteOffset: 2 * j, as: UInt16.self) }
            }
        }
        return Array(slots.prefix(size))
    }

    public func install(_ service: UInt32, slots: [UInt16]) throws {
        let elements = 1 + (slots.count + Self.perElement - 1) / Self.perElement
        var opts = bpf_map_create_opts()
        opts.sz = MemoryLayout<bpf_map_create_opts>.size
        opts.map_flags = UInt32(BPF_F_INNER_MAP)
        let inner = try check(bpf_map_create(BPF_MAP_TYPE_ARRAY, "ppctl_mglv_tbl", 4, 8, UInt32(elements), &opts),
                              "creating the Maglev table of service \(service) (\(slots.count) slots)")
        defer { close(inner) }
        // The header and the slots, element by element, padded with NONE.
        var values = [UInt16](repeating: UInt16(PPCTL_MAGLEV_NONE), count: elements * Self.perElement)
        values[0] = UInt16(truncatingIfNeeded: slots.count)
        values[1] = UInt16(truncatingIfNeeded: slots.count >> 16)
        values[2] = 0
        values[3] = 0
        values.replaceSubrange(Self.perElement..<(Self.perElement + slots.count), with: slots)
        var keys = (0..<UInt32(elements)).map { $0 }
        var count = UInt32(elements)
        var batch = bpf_map_batch_opts()
        batch.sz = MemoryLayout<bpf_map_batch_opts>.size
        let rc = bpf_map_update_batch(inner, &keys, &values, &count, &batch)
        if rc != 0 {
            // Kernels without batch updates for arrays: element by element.
            for k in 0..<UInt32(elements) {
                var key = k
                try values.withUnsafeMutableBytes { raw in
                    try check(bpf_map_update_elem(inner, &key, raw.baseAddress! + 8 * Int(k), UInt64(BPF_ANY)),
                              "filling the Maglev table of service \(service)")
                }
            }
        }
        var key = service, value = UInt32(bitPattern: inner)
        try check(bpf_map_update_elem(fd, &key, &value, UInt64(BPF_ANY)), "switching service \(service) to its new Maglev table")
    }

    public func restore(_ service: UInt32, _ table: AnyObject?) throws {
        var key = service
        if let t = table as? Table {
            var value = UInt32(bitPattern: t.fd)
            try check(bpf_map_update_elem(fd, &key, &value, UInt64(BPF_ANY)), "restoring the Maglev table of service \(service)")
        } else {
            let rc = bpf_map_delete_elem(fd, &key)
            if rc < 0 && rc != -ENOENT && !(rc == -1 && errno == ENOENT) {
                try check(rc, "removing the Maglev table of service \(service)")
            }
        }
    }

    public func services() -> [UInt32] {
        var result: [UInt32] = []
        var id: UInt32 = 0
        for service in 0..<UInt32(PPCTL_MAX_SERVICES) {
            var key = service
            if bpf_map_lookup_elem(fd, &key, &id) == 0 { result.append(service) }
        }
        return result
    }
}
