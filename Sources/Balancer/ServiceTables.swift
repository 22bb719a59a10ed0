import Datapath
import DatapathABI

/// The maps the control plane writes, as plain key/value maps: the pinned BPF maps
/// of an instance in production, in-memory maps in unit tests (`InMemoryMap` and
/// `ServiceTables.inMemory()`, in the DatapathTesting module).
public struct ServiceTables {
    /// VIP:PORT → service (ppctl_services).
    public var services: any KeyValueMap<ppctl_service_key, ppctl_service>
    /// Service id → Maglev table (ppctl_maglev).
    public var maglev: any TableMap
    /// Backend id → backend (ppctl_backends).
    public var backends: any KeyValueMap<UInt32, ppctl_backend>
    /// Service id → encoded TLVs (ppctl_service_tlvs).
    public var tlvs: any KeyValueMap<UInt32, ppctl_service_tlvs>
    /// Service id → SNAT pool (ppctl_snat_pools).
    public var snatPools: any KeyValueMap<UInt32, ppctl_snat_pool>
    /// The instance's hash seed (ppctl_config's hash_seed), which every Maglev
    /// permutation mixes in.
    public var hashSeed: UInt32

    /// Tables over any maps.
    public init(
        services: any KeyValueMap<ppctl_service_key, ppctl_service>,
        maglev: any TableMap,
        backends: any KeyValueMap<UInt32, ppctl_backend>,
        tlvs: any KeyValueMap<UInt32, ppctl_service_tlvs>,
        snatPools: any KeyValueMap<UInt32, ppctl_snat_pool>,
        hashSeed: UInt32 = 0
    ) {
        self.services = services
        self.maglev = maglev
        self.backends = backends
        self.tlvs = tlvs
        self.snatPools = snatPools
        self.hashSeed = hashSeed
    }

    /// The tables of an attached instance, with the seed its configuration holds.
    public init(_ maps: Maps) {
        self.init(
            services: maps.services, maglev: maps.maglev, backends: maps.backends, tlvs: maps.serviceTLVs,
            snatPools: maps.snatPools, hashSeed: maps.config.lookup(0)?.hash_seed ?? 0)
    }
}
