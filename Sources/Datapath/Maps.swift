import DatapathABI
#if canImport(Glibc)
    import Glibc
#endif

/// Typed access to every map of an attached instance. The C side defines each map
/// once, in bpf/include/*_maps.h; the Swift side spells their names here
/// (`Maps.Name`), and the loader refuses an object that pins a map this does not
/// list. Keys and values are the structs of ppctl_abi.h.
public final class Maps {
    /// The pinned maps of both objects, by the names bpf/include/*_maps.h give them
    /// (and under which they are pinned in the instance directory).
    public enum Name: String, CaseIterable, Sendable {
        case services = "ppctl_services"
        /// ABI 3: Maglev tables, one per service (a map of maps), replacing the
        /// 256-slot `ppctl_rings`, which is dropped (`Migration.maglevV3`).
        case maglev = "ppctl_maglev"
        case serviceTLVs = "ppctl_service_tlvs"
        case backends = "ppctl_backends"
        case conntrack = "ppctl_conntrack"
        /// ABI 3: struct ppctl_config gained hash_seed (`Migration.configV3`).
        case config = "ppctl_config_v3"
        case ifaces = "ppctl_ifaces"
        /// ABI 2: struct ppctl_stats grew (named drop and pass reasons); the ABI 1
        /// map, `ppctl_stats`, is migrated (`Migration.statsV2`).
        case stats = "ppctl_stats_v2"
        case gc = "ppctl_gc"
        case snatPools = "ppctl_snat_pools"
        case serviceStats = "ppctl_service_stats"
        case backendStats = "ppctl_backend_stats"
        case sockStats = "ppctl_sock_stats"
        case sockState = "ppctl_sock_state"
        case sockhash = "ppctl_sockhash"
        case sockConfig = "ppctl_sock_config"
    }

    /// VIP and port → service (hash).
    public let services: BPFMap<ppctl_service_key, ppctl_service>
    /// Service id → its Maglev table (array of maps).
    public let maglev: BPFTableMap
    /// Backend id (service id << 8 | index) → backend (hash).
    public let backends: BPFMap<UInt32, ppctl_backend>
    /// Service id → pre-encoded TLVs of its v2 headers (array).
    public let serviceTLVs: BPFMap<UInt32, ppctl_service_tlvs>
    /// Connection tuple → rewrite and state, two entries per connection (hash).
    public let conntrack: BPFMap<ppctl_ct_key, ppctl_ct_entry>
    /// Key 0 → timeouts, SNAT port range, the flow hash's seed.
    public let config: BPFMap<UInt32, ppctl_config>
    /// Ifindex → attached interface (hash).
    public let ifaces: BPFMap<UInt32, ppctl_iface>
    /// Key 0 → counters, one copy per CPU.
    public let stats: PerCPUArray<ppctl_stats>
    /// Service id (or PPCTL_SNAT_POOL_DEFAULT) → SNAT pool (array).
    public let snatPools: BPFMap<UInt32, ppctl_snat_pool>
    /// Service id → its event counters, one copy per CPU (array).
    public let serviceStats: PerCPUArray<ppctl_service_stats>
    /// Backend id → its counters, one copy per CPU (hash; made at its first connection).
    public let backendStats: PerCPUArray<ppctl_backend_stats>
    /// Key 0 → the conntrack sweeper's timer, which only the programs can read.
    public let gc: BPFMap<UInt32, SweeperState>
    /// Key 0 → the socket path's counters, one copy per CPU. Every attach creates
    /// the socket path's maps, a tc-only one too; nil only in pins of a ppctl from
    /// before that.
    public let sockStats: PerCPUArray<ppctl_sock_stats>?

    /// Opens the maps pinned in `instance`. Throws `.notAttached` if there are none,
    /// `.unsafePinPath` if another user could have changed them,
    /// `.system` or `.incompatiblePin` if one cannot be opened as its type.
    public init(_ instance: Instance) throws {
        guard instance.isAttached else { throw DatapathError.notAttached(directory: instance.directory) }
        try instance.checkDirectory()
        services = try BPFMap(pinnedAt: instance.pin(.services))
        maglev = try BPFTableMap(pinnedAt: instance.pin(.maglev))
        backends = try BPFMap(pinnedAt: instance.pin(.backends))
        serviceTLVs = try BPFMap(pinnedAt: instance.pin(.serviceTLVs))
        conntrack = try BPFMap(pinnedAt: instance.pin(.conntrack))
        config = try BPFMap(pinnedAt: instance.pin(.config))
        ifaces = try BPFMap(pinnedAt: instance.pin(.ifaces))
        stats = try PerCPUArray(pinnedAt: instance.pin(.stats))
        gc = try BPFMap(pinnedAt: instance.pin(.gc))
        snatPools = try BPFMap(pinnedAt: instance.pin(.snatPools))
        serviceStats = try PerCPUArray(pinnedAt: instance.pin(.serviceStats))
        backendStats = try PerCPUArray(pinnedAt: instance.pin(.backendStats))
        sockStats = access(instance.pin(.sockStats), F_OK) == 0 ? try PerCPUArray(pinnedAt: instance.pin(.sockStats)) : nil
    }

    /// The value of ppctl_gc as the control plane sees it: PPCTL_GC_STATE_SIZE bytes
    /// holding the sweeper's bpf_timer, which it only ever writes as zeros (that
    /// cancels the timer of a previous program).
    public struct SweeperState: BitwiseCopyable, Sendable {
        var words: (UInt64, UInt64, UInt64) = (0, 0, 0)
        /// All zero: a stopped, unarmed sweeper.
        public init() {
            precondition(MemoryLayout<Self>.size == Int(PPCTL_GC_STATE_SIZE), "SweeperState is not PPCTL_GC_STATE_SIZE bytes")
        }
    }

    /// The statistics counters summed over CPUs.
    public func totals() throws -> ppctl_stats { try stats.sum() }

    /// The socket path's counters summed over CPUs; nil if it was never attached.
    public func socketTotals() throws -> ppctl_sock_stats? {
        guard let sockStats else { return nil }
        return try sockStats.sum()
    }

    /// Connections tracked: the ORIGINAL entries of the conntrack map.
    public func liveConnections() -> Int {
        conntrack.entries().reduce(0) { $0 + ($1.value.dir == UInt8(PPCTL_DIR_ORIGINAL) ? 1 : 0) }
    }
}
