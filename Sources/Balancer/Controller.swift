import Datapath
import DatapathABI
import ProxyProtocol

/// The maps the control plane writes, as plain key/value maps (pinned BPF maps in
/// production, in-memory ones in unit tests).
public struct ServiceTables {
    public var services: any KeyValueMap<ppctl_service_key, ppctl_service>
    public var rings: any KeyValueMap<UInt32, ppctl_ring>
    public var backends: any KeyValueMap<UInt32, ppctl_backend>
    public var tlvs: any KeyValueMap<UInt32, ppctl_service_tlvs>

    public init(services: any KeyValueMap<ppctl_service_key, ppctl_service>,
                rings: any KeyValueMap<UInt32, ppctl_ring>,
                backends: any KeyValueMap<UInt32, ppctl_backend>,
                tlvs: any KeyValueMap<UInt32, ppctl_service_tlvs>) {
        self.services = services
        self.rings = rings
        self.backends = backends
        self.tlvs = tlvs
    }

    /// The tables of an attached instance.
    public init(_ maps: Maps) {
        self.init(services: maps.services, rings: maps.rings, backends: maps.backends, tlvs: maps.serviceTLVs)
    }
}

/// A service as read back from the maps.
public struct ServiceView: Hashable, Sendable {
    public var id: UInt32
    public var spec: ServiceSpec
}

/// Applies changes to services and backends. Every change is validated first and
/// then written in an order that keeps the datapath consistent at each step
/// (backends, then ring, then the service entry; the reverse on removal). If a
/// write fails, what was written is undone, so a failed command leaves the maps
/// exactly as they were.
public final class Controller {
    let t: ServiceTables
    /// Service ids in use, read once per controller (the caller holds the lock).
    private lazy var usedIDs: Set<UInt32> = Set(t.services.keys().compactMap { t.services.lookup($0)?.id })

    public init(_ tables: ServiceTables) { t = tables }

    // MARK: - Reading

    public func services() -> [ServiceView] {
        t.services.keys().compactMap { key in
            t.services.lookup(key).map { view(key: key, value: $0) }
        }.sorted { $0.id < $1.id }
    }

    public func service(_ vip: Endpoint) -> ServiceView? {
        let key = Self.key(vip)
        return t.services.lookup(key).map { view(key: key, value: $0) }
    }

    func view(key: ppctl_service_key, value: ppctl_service) -> ServiceView {
        let family = key.family
        let vip = Endpoint(address: IPAddress(abi: key.vip, family: family), port: UInt16(bigEndian: key.port))
        var backends: [Backend] = []
        for index in 0..<UInt32(value.backend_count) {
            guard let b = t.backends.lookup(Self.backendID(value.id, index)) else { continue }
            backends.append(Backend(endpoint: Endpoint(address: IPAddress(abi: b.addr, family: b.family),
                                                       port: UInt16(bigEndian: b.port)), weight: Int(b.weight)))
        }
        let f = value.flags
        let proxy: ProxyMode = f & UInt32(PPCTL_SVC_PROXY_V2) != 0 ? .v2 : f & UInt32(PPCTL_SVC_PROXY_V1) != 0 ? .v1 : .none
        let snat = f & UInt32(PPCTL_SVC_SNAT_ADDR) != 0 ? IPAddress(abi: value.snat, family: family) : nil
        var tlvs: [ProxyTLV] = []
        if let blob = t.tlvs.lookup(value.id), blob.len > 0 {
            let bytes = withUnsafeBytes(of: blob.bytes) { Array($0.prefix(Int(blob.len))) }
            var i = 0
            while i + 3 <= bytes.count {
                let len = Int(bytes[i + 1]) << 8 | Int(bytes[i + 2])
                guard i + 3 + len <= bytes.count else { break }
                tlvs.append(ProxyTLV(type: bytes[i], value: Array(bytes[(i + 3)..<(i + 3 + len)])))
                i += 3 + len
            }
        }
        let spec = ServiceSpec(vip: vip, backends: backends, proxy: proxy, snat: snat, tlvs: tlvs,
                               uniqueID: f & UInt32(PPCTL_SVC_UNIQUE_ID) != 0, crc32c: f & UInt32(PPCTL_SVC_CRC32C) != 0)
        return ServiceView(id: value.id, spec: spec)
    }

    // MARK: - Changing

    /// Adds a service. Throws if it is invalid or already exists.
    public func addService(_ spec: ServiceSpec) throws {
        try spec.validate()
        guard spec.backends.count <= Ring.size else { throw BalancerError.tooManyBackends(spec.backends.count, limit: Ring.size) }
        let key = Self.key(spec.vip)
        guard t.services.lookup(key) == nil else { throw BalancerError.serviceExists(spec.vip.description) }
        guard let id = (0..<UInt32(PPCTL_MAX_SERVICES)).first(where: { !usedIDs.contains($0) }) else {
            throw BalancerError.tooManyServices(limit: Int(PPCTL_MAX_SERVICES))
        }
        var value = ppctl_service()
        value.id = id
        value.flags = spec.flags
        value.snat = spec.snat?.abi ?? ppctl_addr()
        value.backend_count = UInt16(spec.backends.count)

        try transaction { tx in
            try tx.write(t.tlvs, id, Self.tlvBlob(try spec.encodedTLVs()))
            for (index, b) in spec.backends.enumerated() {
                try tx.insert(t.backends, Self.backendID(id, UInt32(index)), Self.abi(b, service: id))
            }
            try tx.write(t.rings, id, Self.ring(spec.backends))
            try tx.insert(t.services, key, value)
        }
        usedIDs.insert(id)
    }

    /// Adds many services at once: all are validated first (against the maps and
    /// against each other), then added; if one fails, the ones added are removed
    /// again, so the maps end as they were.
    public func addServices(_ specs: [ServiceSpec]) throws {
        var seen = Set<Endpoint>()
        for spec in specs {
            try spec.validate()
            guard seen.insert(spec.vip).inserted else {
                throw BalancerError.serviceExists(spec.vip.description + " (twice in the input)")
            }
            guard t.services.lookup(Self.key(spec.vip)) == nil else { throw BalancerError.serviceExists(spec.vip.description) }
        }
        var added: [Endpoint] = []
        do {
            for spec in specs {
                try addService(spec)
                added.append(spec.vip)
            }
        } catch {
            for vip in added.reversed() { try? deleteService(vip) }
            throw error
        }
    }

    /// Removes a service. Its established connections keep flowing (their entries
    /// carry addresses, not ids); new SYNs to the VIP are no longer taken.
    public func deleteService(_ vip: Endpoint) throws {
        let key = Self.key(vip)
        guard let value = t.services.lookup(key) else { throw BalancerError.unknownService(vip.description) }
        try transaction { tx in
            try tx.remove(t.services, key)
            try tx.write(t.rings, value.id, ppctl_ring())
            try tx.write(t.tlvs, value.id, ppctl_service_tlvs())
            for index in 0..<UInt32(value.backend_count) {
                try tx.remove(t.backends, Self.backendID(value.id, index))
            }
        }
        usedIDs.remove(value.id)
    }

    /// Adds a backend to a service.
    public func addBackend(_ vip: Endpoint, _ backend: Backend) throws {
        let key = Self.key(vip)
        guard let value = t.services.lookup(key), let current = service(vip) else {
            throw BalancerError.unknownService(vip.description)
        }
        var spec = current.spec
        spec.backends.append(backend)
        try spec.validate()
        guard spec.backends.count <= Ring.size else { throw BalancerError.tooManyBackends(spec.backends.count, limit: Ring.size) }
        var updated = value
        updated.backend_count += 1
        try transaction { tx in
            try tx.insert(t.backends, Self.backendID(value.id, UInt32(value.backend_count)), Self.abi(backend, service: value.id))
            try tx.write(t.rings, value.id, Self.ring(spec.backends))
            try tx.write(t.services, key, updated)
        }
    }

    /// Removes a backend from a service; the last one moves into its index. Removing
    /// the last backend leaves a service that refuses new connections.
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
        let removed = remaining.removeLast()
        _ = removed
        var updated = value
        updated.backend_count -= 1
        try transaction { tx in
            if index != last {
                try tx.write(t.backends, Self.backendID(value.id, UInt32(index)), Self.abi(remaining[index], service: value.id))
            }
            try tx.write(t.rings, value.id, Self.ring(remaining))
            try tx.write(t.services, key, updated)
            try tx.remove(t.backends, Self.backendID(value.id, UInt32(last)))
        }
    }

    // MARK: - Encoding

    public static func key(_ vip: Endpoint) -> ppctl_service_key {
        var k = ppctl_service_key()
        k.vip = vip.address.abi
        k.port = vip.port.bigEndian
        k.family = vip.address.family
        k.proto = UInt8(PPCTL_PROTO_TCP)
        return k
    }

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

    static func ring(_ backends: [Backend]) -> ppctl_ring {
        var r = ppctl_ring()
        let slots = Ring.build(weights: backends.map(\.weight))
        withUnsafeMutableBytes(of: &r.backend) { raw in
            for (i, index) in slots.enumerated() { raw.storeBytes(of: UInt32(index), toByteOffset: 4 * i, as: UInt32.self) }
        }
        return r
    }

    static func tlvBlob(_ bytes: [UInt8]) -> ppctl_service_tlvs {
        var blob = ppctl_service_tlvs()
        blob.len = UInt16(bytes.count)
        withUnsafeMutableBytes(of: &blob.bytes) { $0.copyBytes(from: bytes.prefix($0.count)) }
        return blob
    }

    // MARK: - Transactions

    /// Records how to undo each write.
    final class Transaction {
        var undo: [() throws -> Void] = []

        func insert<K, V>(_ map: any KeyValueMap<K, V>, _ key: K, _ value: V) throws {
            try map.update(key, value, mode: .noExist)
            undo.append { try map.delete(key) }
        }

        func write<K, V>(_ map: any KeyValueMap<K, V>, _ key: K, _ value: V) throws {
            let previous = map.lookup(key)
            try map.update(key, value, mode: .any)
            undo.append {
                if let previous { try map.update(key, previous, mode: .any) } else { try map.delete(key) }
            }
        }

        func remove<K, V>(_ map: any KeyValueMap<K, V>, _ key: K) throws {
            guard let previous = map.lookup(key) else { return }
            try map.delete(key)
            undo.append { try map.update(key, previous, mode: .any) }
        }
    }

    func transaction(_ body: (Transaction) throws -> Void) throws {
        let tx = Transaction()
        do {
            try body(tx)
        } catch {
            for step in tx.undo.reversed() { try? step() }
            throw error
        }
    }
}
