import Balancer
import ProxyProtocol

/// ppctld's configuration file, read and checked (docs/config.md): how to attach,
/// the default SNAT pool, the services ppctld owns, and how their VIPs are
/// announced (`bgp`).
struct DaemonConfig: Equatable {
    /// The `attach` section: the options of `ppctl attach`.
    struct Attach: Equatable {
        /// Interfaces the tc programs go on.
        var interfaces: [String] = []
        /// A cgroup v2 whose processes are balanced at the socket layer.
        var cgroup: String?
        /// Size of the conntrack table, fixed when it is created.
        var maxConnections: Int?
        /// SNAT source ports (`attach --snat-ports`); nil: as they are.
        var snatPorts: ClosedRange<UInt16>?
        /// The seed of the flow hash and the Maglev tables (`attach --hash-seed`);
        /// nil: as it is.
        var hashSeed: UInt32?
    }

    /// A service of the file: its name (the `service` label of the metrics), the
    /// spec `service add` would make, and where it is in the file.
    struct Service: Equatable {
        var name: String
        var spec: ServiceSpec
        /// Line of the service's entry, and of its `vip` key.
        var line: Int, vipLine: Int
        /// Line of each backend's `address`.
        var backendLines: [Int]
        /// The check of each backend (index as in `spec.backends`), nil: none (always up).
        var checks: [HealthCheck?] = []
        /// Backends with `drain: true`.
        var drain: Set<Endpoint> = []
    }

    var attach = Attach()
    /// The instance's default SNAT pool (`attach --snat`); empty: none.
    var snat: [IPAddress] = []
    var services: [Service] = []
    /// The `bgp` section: announce the VIPs through bird2; nil: no announcements.
    var bgp: BGPConfig?

    /// The specs to reconcile the maps with.
    var specs: [ServiceSpec] { services.map(\.spec) }
}
