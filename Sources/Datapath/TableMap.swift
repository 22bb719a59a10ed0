import CLibbpf
import DatapathABI
#if canImport(Glibc)
    import Glibc
#endif

/// The per-service Maglev tables (ppctl_maglev): one table of slots per service id.
/// A table is never changed in place: `switchTables` builds new ones and switches
/// the services to them, so the datapath sees a service's old table or its new one.
/// A pinned map of maps in production (`BPFTableMap`), an in-memory stand-in in
/// unit tests (`InMemoryTableMap`, in the DatapathTesting module).
public protocol TableMap: AnyObject {
    /// The service's table, slot by slot; nil if it has none.
    func slots(_ service: UInt32) -> [UInt16]?
    /// The size of the service's table; nil if it has none.
    func size(_ service: UInt32) -> Int?
    /// Switches each service to a new table of its slots (nil: no table), all in
    /// one step where the kernel can (one batched update of the map of maps: an
    /// update of it waits for running programs, ~15 ms, so one per service would
    /// make a 10,000-service apply take minutes). Throws `DatapathError.system` if a
    /// table cannot be made (nothing switched) or the switch fails (the caller puts
    /// back what `current` returned).
    func switchTables(_ changes: [(service: UInt32, slots: [UInt16]?)]) throws
    /// The service's current table, kept alive by the returned handle, to give back
    /// to `restore`; nil if it has none.
    func current(_ service: UInt32) -> AnyObject?
    /// Switches services back to tables `current` returned (nil: no table).
    func restore(_ tables: [(service: UInt32, table: AnyObject?)]) throws
}

extension TableMap {
    /// Switches one service to a new table of `slots`.
    public func install(_ service: UInt32, slots: [UInt16]) throws { try switchTables([(service, slots)]) }
}

/// ppctl_maglev, the pinned array of maps: each service's table is a BPF array
/// (BPF_F_INNER_MAP | BPF_F_MMAPABLE) of 8-byte elements, the header
/// (`ppctl_maglev_head`: the size M) at 0, then four u16 slots per element. Tables
/// are created here at their size, filled through mmap, and switched in with one
/// batched update of the outer map. "No table" is a table of size 0 (one shared by
/// the services this handle removes), so that removals batch too.
public final class BPFTableMap: TableMap {
    /// Where the outer map is pinned.
    public let path: String
    let fd: Int32
    static let perElement = Int(PPCTL_MAGLEV_SLOTS_PER_ELEM)
    static let flags = UInt32(BPF_F_INNER_MAP) | UInt32(BPF_F_MMAPABLE)
    private var emptyTable: Table?

    /// Tables switched per batched update: bounds the descriptors open at once.
    static let chunk = 2048

    /// Opens the map of maps pinned at `path`. Throws `.system`.
    public init(pinnedAt path: String) throws {
        self.path = path
        fd = try check(bpf_obj_get(path), "opening map \(path)")
        Self.raiseOpenFileLimit()
    }

    /// A transaction keeps every table it replaces open until it is over (to put
    /// them back if it fails): one descriptor per service, up to 16,384, beyond the
    /// usual limit of 1,024 (or 20,000). Raised as far as the process may; if it
    /// cannot be, a switch of that many tables fails with EMFILE, reported.
    static func raiseOpenFileLimit() {
        let wanted = rlim_t(4 * Int(PPCTL_MAX_SERVICES) + 1024)
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0, limit.rlim_cur < wanted else { return }
        var raised = limit
        raised.rlim_cur = wanted
        raised.rlim_max = max(limit.rlim_max, wanted)
        if setrlimit(Int32(RLIMIT_NOFILE.rawValue), &raised) != 0 {
            raised.rlim_cur = limit.rlim_max
            raised.rlim_max = limit.rlim_max
            _ = setrlimit(Int32(RLIMIT_NOFILE.rawValue), &raised)
        }
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
        guard bpf_map_lookup_elem(t.fd, &key, &head) == 0, head.size > 0 else { return nil }
        return Int(head.size)
    }

    public func slots(_ service: UInt32) -> [UInt16]? {
        guard let t = table(service) else { return nil }
        var key: UInt32 = 0, head = ppctl_maglev_head()
        guard bpf_map_lookup_elem(t.fd, &key, &head) == 0, head.size > 0 else { return nil }
        let size = Int(head.size), elements = 1 + (size + Self.perElement - 1) / Self.perElement
        let length = elements * 8
        guard let p = mmap(nil, length, PROT_READ, MAP_SHARED, t.fd, 0), p != MAP_FAILED else { return nil }
        defer { munmap(p, length) }
        let slots = UnsafeBufferPointer(start: (p + 8).assumingMemoryBound(to: UInt16.self), count: size)
        return Array(slots)
    }

    /// A new table holding `slots` (none: the size-0 table).
    func make(_ slots: [UInt16], service: UInt32) throws -> Table {
        let elements = 1 + (slots.count + Self.perElement - 1) / Self.perElement
        var opts = bpf_map_create_opts()
        opts.sz = MemoryLayout<bpf_map_create_opts>.size
        opts.map_flags = Self.flags
        let table = Table(
            fd: try check(
                bpf_map_create(BPF_MAP_TYPE_ARRAY, "ppctl_mglv_tbl", 4, 8, UInt32(elements), &opts),
                "creating the Maglev table of service \(service) (\(slots.count) slots)"))
        let length = elements * 8
        guard let p = mmap(nil, length, PROT_READ | PROT_WRITE, MAP_SHARED, table.fd, 0), p != MAP_FAILED else {
            throw DatapathError.system("mapping the Maglev table of service \(service)", errno: errno)
        }
        defer { munmap(p, length) }
        // Header (the size; a new array is all zero), then the slots, then NONE.
        p.storeBytes(of: UInt32(slots.count), as: UInt32.self)
        let out = (p + 8).assumingMemoryBound(to: UInt16.self)
        slots.withUnsafeBufferPointer { out.update(from: $0.baseAddress!, count: slots.count) }
        (out + slots.count).initialize(repeating: UInt16(PPCTL_MAGLEV_NONE), count: (elements - 1) * Self.perElement - slots.count)
        return table
    }

    public func switchTables(_ changes: [(service: UInt32, slots: [UInt16]?)]) throws {
        // In chunks: each one batched update (one wait for running programs), and
        // the new tables' descriptors closed once the outer map holds them.
        for start in stride(from: 0, to: changes.count, by: Self.chunk) {
            let part = changes[start..<min(start + Self.chunk, changes.count)]
            var tables: [Table] = []
            tables.reserveCapacity(part.count)
            for change in part {
                if let slots = change.slots, !slots.isEmpty {
                    tables.append(try make(slots, service: change.service))
                } else {
                    if emptyTable == nil { emptyTable = try make([], service: change.service) }
                    tables.append(emptyTable!)
                }
            }
            try update(part.map(\.service), tables, "switching \(part.count) service(s) to new Maglev tables")
        }
    }

    /// A service that had no table gets the size-0 one (no table to the datapath,
    /// to `size` and to `slots`), so that the whole rollback is batched updates:
    /// deleting each would wait for running programs once per service, minutes for
    /// a failed 10,000-service apply.
    public func restore(_ items: [(service: UInt32, table: AnyObject?)]) throws {
        guard !items.isEmpty else { return }
        if emptyTable == nil, items.contains(where: { !($0.table is Table) }) {
            emptyTable = try make([], service: items[0].service)
        }
        for start in stride(from: 0, to: items.count, by: Self.chunk) {
            let part = items[start..<min(start + Self.chunk, items.count)]
            try update(part.map(\.service), part.map { ($0.table as? Table) ?? emptyTable! }, "restoring Maglev tables")
        }
    }

    /// outer[keys[i]] = tables[i]: one BPF_MAP_UPDATE_BATCH, else one update each.
    private func update(_ keys: [UInt32], _ tables: [Table], _ what: String) throws {
        guard !keys.isEmpty else { return }
        var k = keys
        var values = tables.map { UInt32(bitPattern: $0.fd) }
        var count = UInt32(keys.count)
        var opts = bpf_map_batch_opts()
        opts.sz = MemoryLayout<bpf_map_batch_opts>.size
        if bpf_map_update_batch(fd, &k, &values, &count, &opts) == 0 { return }
        for i in Int(count)..<keys.count {
            var key = keys[i], value = values[i]
            try check(bpf_map_update_elem(fd, &key, &value, UInt64(BPF_ANY)), what)
        }
    }
}
