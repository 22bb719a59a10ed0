import Datapath
import DatapathABI
import ProxyProtocol

/// Applies changes to services and backends. Every change is validated first and
/// then written in an order that keeps the datapath consistent at each step
/// (backends, then Maglev table, then the service entry; the reverse on removal). If a
/// write fails, what was written is undone, so a failed change leaves the maps
/// exactly as they were.
///
/// A controller reads the tables once when it first needs the free service ids:
/// use one per command, under the instance lock (`Instance.withLock`).
/// Established connections never depend on these tables (their conntrack entries
/// carry addresses), so no change here touches them.
public final class Controller {
    let t: ServiceTables
    private var freeIDs: ServiceIDs?

    /// A controller over `tables`.
    public init(_ tables: ServiceTables) { t = tables }

    /// A controller over the pinned maps of an attached instance: the one way the
    /// CLI and ppctld open a balancer. Throws `DatapathError.notAttached` when the
    /// instance has no maps.
    public convenience init(opening instance: Instance) throws {
        self.init(ServiceTables(try Maps(instance)))
    }

    // MARK: - Reading

    /// Every service, by id. Reads each table once (batched on BPF maps).
    public func services() -> [ServiceView] {
        var backends: [UInt32: ppctl_backend] = [:]
        for (id, b) in t.backends.entries() { backends[id] = b }
        return t.services.entries().map { view(key: $0.key, value: $0.value) { backends[$0] } }
            .sorted { $0.id < $1.id }
    }

    /// The service at `vip`, or nil.
    public func service(_ vip: Endpoint) -> ServiceView? {
        let key = Self.key(vip)
        return t.services.lookup(key).map { view(key: key, value: $0) { t.backends.lookup($0) } }
    }

    private func view(key: ppctl_service_key, value: ppctl_service, backend: (UInt32) -> ppctl_backend?) -> ServiceView {
        let family = key.family
        let vip = Endpoint(address: IPAddress(abi: key.vip, family: family), port: UInt16(bigEndian: key.port))
        let backends = (0..<UInt32(value.backend_count)).compactMap { index in
            backend(Self.backendID(value.id, index)).map {
                Backend(
                    endpoint: Endpoint(address: IPAddress(abi: $0.addr, family: $0.family), port: UInt16(bigEndian: $0.port)),
                    weight: Int($0.weight))
            }
        }
        let f = value.flags
        func has(_ flag: UInt32) -> Bool { f & flag != 0 }
        let proxy: ProxyMode = has(PPCTL_SVC_PROXY_V2) ? .v2 : has(PPCTL_SVC_PROXY_V1) ? .v1 : .none
        let snat = has(PPCTL_SVC_SNAT_POOL) ? t.snatPools.lookup(value.id).map { SNATPool.addresses($0, family: family) } ?? [] : []
        let tlvs = proxy == .v2 ? t.tlvs.lookup(value.id).map(Self.decodeTLVs) ?? [] : []
        let spec = ServiceSpec(
            vip: vip, backends: backends, proxy: proxy, snat: snat, tlvs: tlvs,
            uniqueID: has(PPCTL_SVC_UNIQUE_ID), crc32c: has(PPCTL_SVC_CRC32C),
            serverFirst: has(PPCTL_SVC_SERVER_FIRST))
        var withSize = spec
        withSize.tableSize = value.table_size == 0 ? nil : Int(value.table_size)
        return ServiceView(id: value.id, owner: ServiceOwner(rawValue: value.owner) ?? .cli, spec: withSize)
    }

    /// True if `vip` is a service.
    public func exists(_ vip: Endpoint) -> Bool { t.services.lookup(Self.key(vip)) != nil }

    // MARK: - Changing

    /// Adds a service. Throws `BalancerError` if it is invalid or exists (nothing
    /// changed), or the map's error if a write fails (rolled back).
    public func addService(_ spec: ServiceSpec) throws {
        try addServices([spec])
    }

    /// Adds many services at once, all or none: every spec is validated (against
    /// the maps and against the others) before anything is written, and if a write
    /// fails every write before it is undone. No backend may be the VIP:PORT of a
    /// service, existing or new (`.backendIsAVIP`, `.vipIsABackend`).
    public func addServices(_ specs: [ServiceSpec], owner: ServiceOwner = .cli) throws {
        var seen = Set<Endpoint>()
        for spec in specs {
            try spec.validate()
            guard seen.insert(spec.vip).inserted else {
                throw BalancerError.serviceExists(spec.vip.description + " (twice in the input)")
            }
            guard !exists(spec.vip) else { throw BalancerError.serviceExists(spec.vip.description) }
        }
        // No backend is a VIP:PORT, and no VIP:PORT a backend, of any service.
        let existing = t.services.entries()
        let vips = Set(existing.map { Self.endpoint($0.key) } + specs.map(\.vip))
        for spec in specs {
            if let b = spec.backends.first(where: { vips.contains($0.endpoint) }) {
                throw BalancerError.backendIsAVIP(b.endpoint.description)
            }
        }
        let newVIPs = Set(specs.map(\.vip))
        for (_, b) in t.backends.entries() where newVIPs.contains(Self.endpoint(b)) {
            throw BalancerError.vipIsABackend(Self.endpoint(b).description)
        }
        var ids = freeIDs ?? ServiceIDs(used: existing.map(\.value.id))
        let assigned = try specs.map { _ in
            guard let id = ids.take() else { throw BalancerError.tooManyServices(limit: Int(PPCTL_MAX_SERVICES)) }
            return id
        }
        try Transaction.run { tx in
            for (spec, id) in zip(specs, assigned) { try writeData(spec, id: id, tx) }
            try tx.flushTables(t.maglev)
            for (spec, id) in zip(specs, assigned) { try writeEntry(spec, id: id, owner: owner, tx) }
        }
        freeIDs = ids
    }

    /// The writes of one new service, in three steps so that many services switch
    /// their tables at once: its TLVs and backends, and its Maglev table staged
    /// (`writeData`); the tables (`Transaction.flushTables`); then the service entry
    /// that makes the datapath use them (`writeEntry`).
    private func writeData(_ spec: ServiceSpec, id: UInt32, excluded: Set<Endpoint> = [], _ tx: Transaction) throws {
        try tx.write(t.tlvs, id, Self.tlvBlob(try spec.encodedTLVs()))
        try tx.write(t.snatPools, id, SNATPool.abi(spec.snat))
        for (index, b) in spec.backends.enumerated() {
            try tx.insert(t.backends, Self.backendID(id, UInt32(index)), Self.abi(b, service: id))
        }
        tx.stageTable(id, table(spec, excluding: excluded))
    }

    private func writeEntry(_ spec: ServiceSpec, id: UInt32, owner: ServiceOwner, _ tx: Transaction) throws {
        var value = ppctl_service()
        value.id = id
        value.flags = spec.flags
        value.backend_count = UInt16(spec.backends.count)
        value.owner = owner.rawValue
        value.table_size = UInt32(spec.tableSize ?? 0)
        try tx.insert(t.services, Self.key(spec.vip), value)
    }

    /// Removes a service: the entry first (new SYNs to the VIP stop being taken),
    /// then its table, TLVs and backends. Its established connections keep flowing.
    /// Throws `.unknownService`.
    public func deleteService(_ vip: Endpoint) throws {
        let key = Self.key(vip)
        guard let value = t.services.lookup(key) else { throw BalancerError.unknownService(vip.description) }
        try Transaction.run { tx in
            try remove(key, value, tx)
            try tx.flushTables(t.maglev)
        }
        freeIDs?.release(value.id)
    }

    /// The writes that remove one service: its entry, then its TLVs, pool and
    /// backends; its table is staged to go (the caller flushes).
    private func remove(_ key: ppctl_service_key, _ value: ppctl_service, _ tx: Transaction) throws {
        try tx.remove(t.services, key)
        tx.stageTable(value.id, nil)
        try tx.write(t.tlvs, value.id, ppctl_service_tlvs())
        try tx.write(t.snatPools, value.id, ppctl_snat_pool())
        for index in 0..<UInt32(value.backend_count) {
            try tx.remove(t.backends, Self.backendID(value.id, index))
        }
    }

    /// Makes the services of `owner` exactly `specs`, in one transaction: services
    /// of `owner` not in `specs` are removed, those that differ are rewritten in
    /// place (same id: the VIP never stops being a service), new ones are added.
    /// Services of other owners are never changed; a spec whose VIP:PORT is one of
    /// theirs throws `.ownedByAnother`. Every spec is validated, and the result is
    /// checked as `addServices` checks (no VIP twice, no backend that is a VIP:PORT
    /// of any service kept or declared) before anything is written. If a write
    /// fails, every write before it is undone.
    ///
    /// `excluded` names, per VIP:PORT, backends that stay in the service but out
    /// of its table (down or draining, as `setSelection` writes it): a rewrite
    /// keeps them out.
    @discardableResult
    public func reconcile(
        _ specs: [ServiceSpec], owner: ServiceOwner,
        excluded: [Endpoint: Set<Endpoint>] = [:]
    ) throws -> Reconciliation {
        var seen = Set<Endpoint>()
        for spec in specs {
            try spec.validate()
            guard seen.insert(spec.vip).inserted else {
                throw BalancerError.serviceExists(spec.vip.description + " (twice in the input)")
            }
        }
        let current = services()
        var byVIP: [Endpoint: ServiceView] = [:]
        for view in current { byVIP[view.spec.vip] = view }
        if let taken = specs.first(where: { byVIP[$0.vip].map { $0.owner != owner } ?? false }) {
            throw BalancerError.ownedByAnother(taken.vip.description, owner: byVIP[taken.vip]!.owner)
        }
        let removed = current.filter { $0.owner == owner && !seen.contains($0.spec.vip) }
        let kept = current.filter { $0.owner != owner }
        let vips = Set(kept.map(\.spec.vip)).union(seen)
        for spec in specs {
            if let b = spec.backends.first(where: { vips.contains($0.endpoint) }) {
                throw BalancerError.backendIsAVIP(b.endpoint.description)
            }
        }
        for view in kept {
            if let b = view.spec.backends.first(where: { seen.contains($0.endpoint) }) {
                throw BalancerError.vipIsABackend(b.endpoint.description)
            }
        }
        let changed = specs.compactMap { spec in byVIP[spec.vip].flatMap { $0.spec == spec ? nil : ($0, spec) } }
        let added = specs.filter { byVIP[$0.vip] == nil }
        // Ids of removed services are not reused in the same transaction.
        var ids = ServiceIDs(used: current.map(\.id))
        let assigned = try added.map { _ in
            guard let id = ids.take() else { throw BalancerError.tooManyServices(limit: Int(PPCTL_MAX_SERVICES)) }
            return id
        }
        try Transaction.run { tx in
            for view in removed {
                let key = Self.key(view.spec.vip)
                if let value = t.services.lookup(key) { try remove(key, value, tx) }
            }
            for (old, new) in changed { try rewriteData(old, to: new, excluded: excluded[new.vip] ?? [], tx) }
            for (spec, id) in zip(added, assigned) { try writeData(spec, id: id, excluded: excluded[spec.vip] ?? [], tx) }
            try tx.flushTables(t.maglev)
            for (old, new) in changed { try rewriteEntry(old, to: new, tx) }
            for (spec, id) in zip(added, assigned) { try writeEntry(spec, id: id, owner: owner, tx) }
        }
        freeIDs = nil
        return Reconciliation(added: added.map(\.vip), changed: changed.map(\.1.vip), removed: removed.map(\.spec.vip))
    }

    /// The writes that change a service in place, keeping its id: TLVs, pool and
    /// backends (index by index) and the table staged (`rewriteData`); the tables
    /// switch; then the entry with the new flags and count, then the backends beyond
    /// the new count (`rewriteEntry`). At every step the table points at backends
    /// that exist.
    private func rewriteData(_ old: ServiceView, to spec: ServiceSpec, excluded: Set<Endpoint>, _ tx: Transaction) throws {
        let id = old.id
        try tx.write(t.tlvs, id, Self.tlvBlob(try spec.encodedTLVs()))
        try tx.write(t.snatPools, id, SNATPool.abi(spec.snat))
        for (index, b) in spec.backends.enumerated() {
            try tx.write(t.backends, Self.backendID(id, UInt32(index)), Self.abi(b, service: id))
        }
        tx.stageTable(id, table(spec, excluding: excluded))
    }

    private func rewriteEntry(_ old: ServiceView, to spec: ServiceSpec, _ tx: Transaction) throws {
        let key = Self.key(spec.vip)
        guard var value = t.services.lookup(key) else { throw BalancerError.unknownService(spec.vip.description) }
        let id = old.id, oldCount = Int(value.backend_count)
        value.flags = spec.flags
        value.backend_count = UInt16(spec.backends.count)
        value.table_size = UInt32(spec.tableSize ?? 0)
        try tx.write(t.services, key, value)
        for index in spec.backends.count..<max(spec.backends.count, oldCount) {
            try tx.remove(t.backends, Self.backendID(id, UInt32(index)))
        }
    }

    /// Adds a backend to a service, at the next index: the backend, then the new
    /// table, then the service's count. Throws `.unknownService`, what
    /// `ServiceSpec.validate()` throws for the service with the backend added
    /// (duplicate, VIP, family, too many), or `.backendIsAVIP` if the backend is
    /// another service's VIP:PORT.
    public func addBackend(_ vip: Endpoint, _ backend: Backend) throws {
        let key = Self.key(vip)
        guard let value = t.services.lookup(key), let current = service(vip) else {
            throw BalancerError.unknownService(vip.description)
        }
        var spec = current.spec
        spec.backends.append(backend)
        try spec.validate()
        guard !exists(backend.endpoint) else {
            throw BalancerError.backendIsAVIP(backend.endpoint.description)
        }
        var updated = value
        updated.backend_count += 1
        try Transaction.run { tx in
            try tx.insert(t.backends, Self.backendID(value.id, UInt32(value.backend_count)), Self.abi(backend, service: value.id))
            try tx.setTable(t.maglev, value.id, table(spec))
            try tx.write(t.services, key, updated)
        }
    }

    /// Removes a backend from a service; the service's last backend moves into its
    /// index, so indexes stay dense. Removing the only backend is allowed: the
    /// service then refuses new connections (backend_count 0). Throws
    /// `.unknownService` or `.unknownBackend`.
    public func deleteBackend(_ vip: Endpoint, _ endpoint: Endpoint) throws {
        let key = Self.key(vip)
        guard let value = t.services.lookup(key), let current = service(vip) else {
            throw BalancerError.unknownService(vip.description)
        }
        guard let index = current.spec.backends.firstIndex(where: { $0.endpoint == endpoint }) else {
            throw BalancerError.unknownBackend(endpoint.description, service: vip.description)
        }
        var remaining = current.spec.backends
        let last = remaining.count - 1
        remaining.swapAt(index, last)
        remaining.removeLast()
        var updated = value
        updated.backend_count -= 1
        try Transaction.run { tx in
            // The table still points at `index`: it now holds the moved backend, never
            // the deleted one. Then the table without `last`, the count, and `last`.
            if index != last {
                try tx.write(t.backends, Self.backendID(value.id, UInt32(index)), Self.abi(remaining[index], service: value.id))
            }
            var spec = current.spec
            spec.backends = remaining
            try tx.setTable(t.maglev, value.id, table(spec))
            try tx.write(t.services, key, updated)
            try tx.remove(t.backends, Self.backendID(value.id, UInt32(last)))
        }
    }

    /// Rebuilds the table of the service at `vip` so that new connections go only
    /// to its backends not in `excluded` (down or draining); with none left, new
    /// connections are refused with a RST (every slot PPCTL_MAGLEV_NONE). The size
    /// stays (it follows the backends configured, not their health), so a backend
    /// that leaves moves only its own flows. One switch of tables: backends and
    /// established connections are not touched, and a connection keeps the backend
    /// it was given. Throws `.unknownService`.
    public func setSelection(_ vip: Endpoint, excluding excluded: Set<Endpoint>) throws {
        guard let current = service(vip) else { throw BalancerError.unknownService(vip.description) }
        try t.maglev.switchTables([(current.id, table(current.spec, excluding: excluded))])
    }

    /// Builds the services' tables again for the instance's seed and switches to
    /// those that differ: with `all`, every service's (after the seed changed),
    /// leaving out the backends its current table leaves out (down or draining);
    /// otherwise only services without a table (after a migration from the rings
    /// of ABI 2) get one, with every backend. All or none, like the other changes.
    /// Returns how many tables were switched.
    @discardableResult
    public func rebuildTables(all: Bool = true) throws -> Int {
        var switched = 0
        let views = services()
        try Transaction.run { tx in
            for view in views {
                if !all && t.maglev.size(view.id) != nil { continue }
                let current = all ? t.maglev.slots(view.id) : nil
                var excluded = Set<Endpoint>()
                if let current {
                    let present = Set(current)
                    for (i, b) in view.spec.backends.enumerated() where !present.contains(UInt16(i)) { excluded.insert(b.endpoint) }
                }
                let wanted = table(view.spec, excluding: excluded)
                if wanted != current {
                    tx.stageTable(view.id, wanted)
                    switched += 1
                }
            }
            try tx.flushTables(t.maglev)
        }
        return switched
    }

    // MARK: - Encoding

    /// The services map's key for a VIP:PORT (TCP).
    public static func key(_ vip: Endpoint) -> ppctl_service_key {
        var k = ppctl_service_key()
        k.vip = vip.address.abi
        k.port = vip.port.bigEndian
        k.family = vip.address.family
        k.proto = UInt8(PPCTL_PROTO_TCP)
        return k
    }

    /// The VIP:PORT of a services map key.
    static func endpoint(_ key: ppctl_service_key) -> Endpoint {
        Endpoint(address: IPAddress(abi: key.vip, family: key.family), port: UInt16(bigEndian: key.port))
    }

    /// The address and port of a backends map value.
    static func endpoint(_ b: ppctl_backend) -> Endpoint {
        Endpoint(address: IPAddress(abi: b.addr, family: b.family), port: UInt16(bigEndian: b.port))
    }

    /// PPCTL_BACKEND_ID: the service id and the backend's index.
    static func backendID(_ service: UInt32, _ index: UInt32) -> UInt32 { service << 8 | (index & 0xff) }

    static func abi(_ b: Backend, service: UInt32) -> ppctl_backend {
        var v = ppctl_backend()
        v.addr = b.endpoint.address.abi
        v.port = b.endpoint.port.bigEndian
        v.family = b.endpoint.address.family
        v.service_id = service
        v.weight = UInt32(b.weight)
        return v
    }

    /// The Maglev table of a service (slots hold indexes into its backends) at its
    /// size (`ServiceSpec.maglevSize`) and the instance's seed, without the backends
    /// in `excluded`: if that leaves none, every slot is PPCTL_MAGLEV_NONE. nil for a
    /// service without backends (it has no table).
    func table(_ spec: ServiceSpec, excluding excluded: Set<Endpoint> = []) -> [UInt16]? {
        guard !spec.backends.isEmpty else { return nil }
        let members = spec.backends.map {
            Maglev.Member(endpoint: $0.endpoint, weight: $0.weight, selectable: !excluded.contains($0.endpoint))
        }
        return Maglev.build(members, size: spec.maglevSize, seed: t.hashSeed)
    }

    static func tlvBlob(_ bytes: [UInt8]) -> ppctl_service_tlvs {
        var blob = ppctl_service_tlvs()
        blob.len = UInt16(bytes.count)
        withUnsafeMutableBytes(of: &blob.bytes) { $0.copyBytes(from: bytes.prefix($0.count)) }
        return blob
    }

    static func decodeTLVs(_ blob: ppctl_service_tlvs) -> [ProxyTLV] {
        let bytes = withUnsafeBytes(of: blob.bytes) { Array($0.prefix(Int(blob.len))) }
        var tlvs: [ProxyTLV] = []
        var i = 0
        while i + 3 <= bytes.count {
            let len = Int(bytes[i + 1]) << 8 | Int(bytes[i + 2])
            guard i + 3 + len <= bytes.count else { break }
            tlvs.append(ProxyTLV(type: bytes[i], value: Array(bytes[(i + 3)..<(i + 3 + len)])))
            i += 3 + len
        }
        return tlvs
    }
}

/// The free service ids (indexes below PPCTL_MAX_SERVICES): the lowest first, in
/// amortised constant time per id.
struct ServiceIDs {
    private var used: Set<UInt32>
    /// Every id below it is used.
    private var floor: UInt32 = 0

    init(used: [UInt32]) { self.used = Set(used) }

    /// The lowest free id, now used; nil if none is left.
    mutating func take() -> UInt32? {
        while floor < UInt32(PPCTL_MAX_SERVICES) && used.contains(floor) { floor += 1 }
        guard floor < UInt32(PPCTL_MAX_SERVICES) else { return nil }
        used.insert(floor)
        return floor
    }

    /// Makes `id` free again.
    mutating func release(_ id: UInt32) {
        used.remove(id)
        floor = min(floor, id)
    }
}
