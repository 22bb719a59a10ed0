import DatapathABI
import ProxyProtocol

/// The address type is ProxyProtocol's; what the balancer adds: the datapath's
/// form of an address, and which addresses it refuses.
extension IPAddress {
    /// PPCTL_FAMILY_IPV4 or PPCTL_FAMILY_IPV6.
    public var family: UInt8 {
        switch self {
        case .v4: return UInt8(PPCTL_FAMILY_IPV4)
        case .v6: return UInt8(PPCTL_FAMILY_IPV6)
        }
    }

    /// The address as the datapath stores it (network order, IPv4 in the first word).
    public var abi: ppctl_addr {
        var a = ppctl_addr()
        withUnsafeMutableBytes(of: &a) { raw in
            switch self {
            case .v4(let v):
                raw[0] = v.bytes.0
                raw[1] = v.bytes.1
                raw[2] = v.bytes.2
                raw[3] = v.bytes.3
            case .v6(let v):
                for i in 0..<16 { raw[i] = v.bytes[i] }
            }
        }
        return a
    }

    /// Reads an address stored by the datapath.
    public init(abi: ppctl_addr, family: UInt8) {
        let bytes = withUnsafeBytes(of: abi) { Array($0) }
        if family == UInt8(PPCTL_FAMILY_IPV6) {
            self = .v6(IPv6Address(bytes: bytes)!)
        } else {
            self = .v4(IPv4Address(bytes[0], bytes[1], bytes[2], bytes[3]))
        }
    }

    /// Why this address cannot be a VIP, backend or SNAT address, or nil if it can:
    /// unspecified, this-network, broadcast, loopback, multicast, reserved, and
    /// link-local (169.254/16, fe80::/10: it needs a scope the datapath does not keep).
    /// IPv4-mapped IPv6 addresses are refused by `ServiceSpec.validate()` (as
    /// `.ipv4Mapped`) before this is asked.
    var unusableReason: String? {
        switch self {
        case .v4(let a):
            let b = a.bytes
            if a.hostOrder == 0 { return "the unspecified address" }
            if b.0 == 0 { return "in 0.0.0.0/8 (this network)" }
            if a.hostOrder == 0xFFFF_FFFF { return "the broadcast address" }
            if b.0 == 127 { return "a loopback address" }
            if b.0 == 169 && b.1 == 254 { return "a link-local address" }
            if b.0 >= 224 && b.0 <= 239 { return "a multicast address" }
            if b.0 >= 240 { return "a reserved address" }
            return nil
        case .v6(let a):
            if a.bytes.allSatisfy({ $0 == 0 }) { return "the unspecified address" }
            if a.bytes[0..<15].allSatisfy({ $0 == 0 }) && a.bytes[15] == 1 { return "the loopback address" }
            if a.bytes[0] == 0xff { return "a multicast address" }
            if a.bytes[0] == 0xfe && a.bytes[1] & 0xc0 == 0x80 { return "a link-local address" }
            return nil
        }
    }
}
