import Datapath
import DatapathABI

/// The maps the control plane writes, as plain key/value maps: the pinned BPF maps
/// of an instance in production, in-memory maps in unit tests (`InMemoryMap` and
/// `ServiceTables.inMemory()`, in the DatapathTesting module).
public struct ServiceTables {
    /// VIP:PORT → service (ppctl_services).
    public var services: any KeyValueMap<ppctl_service_key, ppctl_service>
    /// Service id → endpoint ring (ppctl_rings).
    public var rings: any KeyValueMap<UInt32, ppctl_ring>
    /// Backend id → backend (ppctl_backends).
    public var backends: any KeyValueMap<UInt32, ppctl_backend>
    /// Service id → encoded TLVs (ppctl_service_tlvs).
    public var tlvs: any KeyValueMap<UInt32, ppctl_service_tlvs>
    /// Service id → SNAT pool (ppctl_snat_pools).
    public var snatPools: any KeyValueMap<UInt32, ppctl_snat_pool>

    /// Tables over any maps.
    public init(services: any KeyValueMap<ppctl_service_key, ppctl_service>,
                rings: any KeyValueMap<UInt32, ppctl_ring>,
                backends: any KeyValueMap<UInt32, ppctl_backend>,
                tlvs: any KeyValueMap<UInt32, ppctl_service_tlvs>,
                snatPools: any KeyValueMap<UInt32, ppctl_snat_pool>) {
        self.services = services
        self.rings = rings
        self.backends = backends
        self.tlvs = tlvs
        self.snatPools = snatPools
    }

    /// The tables of an attached instance.
    public init(_ maps: Maps) {
        self.init(services: maps.services, rings: maps.rings, backends: maps.backends, tlvs: maps.serviceTLVs, snatPools: maps.snatPools)
    }
}
