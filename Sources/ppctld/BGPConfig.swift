import Balancer
import ProxyProtocol

/// The `bgp` section of ppctld's file (docs/config.md, "BGP"): how ppctld announces
/// its VIPs through the bird2 running beside it. ppctld writes `include` (the
/// static routes of the VIPs, the BFD protocol and one BGP protocol per peer:
/// `BirdConfig`) and asks bird to read it again (`birdc -s birdSocket configure`).
struct BGPConfig: Equatable {
    /// A BGP neighbour: the router the VIPs are announced to.
    struct Peer: Equatable {
        var address: IPAddress
        /// The neighbour's AS number.
        var asn: UInt32
        /// Line of the peer's entry in the file.
        var line = 0
    }

    /// BFD on the sessions (RFC 5880): a dead balancer's routes leave the router
    /// within `interval × multiplier`, not the BGP hold time.
    struct BFD: Equatable {
        var enabled = false
        /// Seconds between BFD packets, both ways (bird's `min rx/tx interval`).
        var interval = 0.1
        /// Packets missed before the session is down.
        var multiplier = 3
    }

    /// ppctld's own AS number.
    var localAS: UInt32
    /// bird's router id (an IPv4 address, written as `router id` in the include).
    var routerID: IPv4Address
    var peers: [Peer]
    var bfd = BFD()
    /// BGP hold time in seconds (3...65535); nil: bird's default (240 s).
    var holdTime: Int?
    /// bird's control socket (`bird -s`).
    var birdSocket = BGPConfig.defaultSocket
    /// The file ppctld writes and bird.conf includes.
    var include = BGPConfig.defaultInclude
    /// The birdc binary.
    var birdc = BGPConfig.defaultBirdc

    static let defaultSocket = "/run/bird/bird.ctl"
    static let defaultInclude = "/etc/bird/ppctld.conf"
    static let defaultBirdc = "/usr/sbin/birdc"
    static let asRange: ClosedRange<Int> = 1...4_294_967_295
    static let bfdIntervalRange: ClosedRange<Double> = 0.01...10
    static let multiplierRange: ClosedRange<Int> = 1...255
    static let holdTimeRange: ClosedRange<Int> = 3...65535
}
