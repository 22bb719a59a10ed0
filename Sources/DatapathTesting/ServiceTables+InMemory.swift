import Balancer
import Datapath
import DatapathABI

extension ServiceTables {
    /// Empty in-memory tables of the datapath's sizes, for unit tests.
    public static func inMemory(hashSeed: UInt32 = 0) -> ServiceTables {
        ServiceTables(
            services: InMemoryMap(capacity: Int(PPCTL_MAX_SERVICES)),
            maglev: InMemoryTableMap(),
            backends: InMemoryMap(capacity: Int(PPCTL_MAX_BACKENDS)),
            tlvs: InMemoryMap(arrayOf: Int(PPCTL_MAX_SERVICES), zero: ppctl_service_tlvs()),
            snatPools: InMemoryMap(arrayOf: Int(PPCTL_MAX_SERVICES) + 1, zero: ppctl_snat_pool()),
            hashSeed: hashSeed)
    }
}
