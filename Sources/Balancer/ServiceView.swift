/// A service as read back from the maps: its id in the datapath, who manages it,
/// and its spec.
public struct ServiceView: Hashable, Sendable {
    /// Index of the service's Maglev table and TLVs; its backends' ids are `id << 8 | index`.
    public var id: UInt32
    /// Who manages it: the CLI or ppctld. An owner this version does not know
    /// reads as `.cli`, which ppctld leaves alone.
    public var owner: ServiceOwner = .cli
    /// The service, backends in datapath index order.
    public var spec: ServiceSpec
}
