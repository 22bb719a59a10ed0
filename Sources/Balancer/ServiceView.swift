/// A service as read back from the maps: its id in the datapath and its spec.
public struct ServiceView: Hashable, Sendable {
    /// Index of the service's ring and TLVs; its backends' ids are `id << 8 | index`.
    public var id: UInt32
    /// The service, backends in datapath index order.
    public var spec: ServiceSpec
}
