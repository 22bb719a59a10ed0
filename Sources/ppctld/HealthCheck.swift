import Balancer

/// How ppctld checks a backend (docs/health.md): `health:` of a service, with
/// the keys a backend's own `health:` gives put over it.
struct HealthCheck: Equatable {
    enum Kind: String { case tcp, http }
    /// What happens to a backend's connections when it goes down.
    enum OnDown: String { case keep, reset }

    /// `tcp`: the connection opens (and the probe's header is sent); `http`: `GET
    /// path` answers `status`.
    var kind = Kind.tcp
    var path = "/"
    var status = 200
    /// The probe's own PROXY header: v2 LOCAL, v1 `PROXY UNKNOWN`, or none.
    var proxy = ProxyMode.none
    /// Seconds between checks, and the most a check may take.
    var interval = 2.0, timeout = 2.0
    /// Successes that bring a down backend up, failures that take an up one down.
    var rise = 2, fall = 3
    var onDown = OnDown.keep

    /// HAProxy's defaults (2 s, 2 s, 2, 3), with the probe header of the service's mode.
    init(serviceProxy: ProxyMode) { proxy = serviceProxy }

    /// The bytes a probe sends first: v2 LOCAL (`0D0A0D0A000D0A515549540A 20 00 0000`:
    /// the receiver ignores the addresses) or v1 `PROXY UNKNOWN\r\n`.
    var header: [UInt8] {
        switch proxy {
        case .v2: return [0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A, 0x20, 0x00, 0x00, 0x00]
        case .v1: return Array("PROXY UNKNOWN\r\n".utf8)
        case .none: return []
        }
    }
}
