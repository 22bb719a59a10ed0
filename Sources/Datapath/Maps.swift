import DatapathABI

/// Typed access to every map of an attached instance. Map names are looked up here
/// and nowhere else.
public final class Maps {
    public let services: BPFMap<ppctl_service_key, ppctl_service>
    public let rings: BPFMap<UInt32, ppctl_ring>
    public let backends: BPFMap<UInt32, ppctl_backend>
    public let serviceTLVs: BPFMap<UInt32, ppctl_service_tlvs>
    public let conntrack: BPFMap<ppctl_ct_key, ppctl_ct_entry>
    public let config: BPFMap<UInt32, ppctl_config>
    public let ifaces: BPFMap<UInt32, ppctl_iface>
    public let stats: PerCPUArray<ppctl_stats>

    /// The names of the pinned maps, as the eBPF object declares them.
    public static let pinnedNames = [
        "ppctl_services", "ppctl_rings", "ppctl_backends", "ppctl_service_tlvs", "ppctl_conntrack",
        "ppctl_config", "ppctl_ifaces", "ppctl_stats", "ppctl_gc",
    ]

    /// Opens the maps pinned in `instance`. Throws `.notAttached` if there are none.
    public init(_ instance: Instance) throws {
        guard instance.isAttached else { throw DatapathError.notAttached(directory: instance.directory) }
        services = try BPFMap(pinnedAt: instance.pin("ppctl_services"))
        rings = try BPFMap(pinnedAt: instance.pin("ppctl_rings"))
        backends = try BPFMap(pinnedAt: instance.pin("ppctl_backends"))
        serviceTLVs = try BPFMap(pinnedAt: instance.pin("ppctl_service_tlvs"))
        conntrack = try BPFMap(pinnedAt: instance.pin("ppctl_conntrack"))
        config = try BPFMap(pinnedAt: instance.pin("ppctl_config"))
        ifaces = try BPFMap(pinnedAt: instance.pin("ppctl_ifaces"))
        stats = try PerCPUArray(pinnedAt: instance.pin("ppctl_stats"))
    }

    /// The statistics counters summed over CPUs.
    public func totals() throws -> ppctl_stats {
        var sum = ppctl_stats()
        for v in try stats.values() {
            withUnsafeMutableBytes(of: &sum) { s in
                withUnsafeBytes(of: v) { c in
                    for i in 0..<(s.count / 8) {
                        let a = s.loadUnaligned(fromByteOffset: i * 8, as: UInt64.self)
                        let b = c.loadUnaligned(fromByteOffset: i * 8, as: UInt64.self)
                        s.storeBytes(of: a &+ b, toByteOffset: i * 8, as: UInt64.self)
                    }
                }
            }
        }
        return sum
    }
}
