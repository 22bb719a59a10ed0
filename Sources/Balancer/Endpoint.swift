import DatapathABI
import ProxyProtocol

/// An IPv4 or IPv6 address.
public enum IPAddress: Hashable, Sendable, CustomStringConvertible {
    case v4(IPv4Address)
    case v6(IPv6Address)

    /// Parses an address: dotted quad, or IPv6 text (without brackets).
    public init?(_ text: String) {
        if let a = IPv4Address(text) { self = .v4(a) } else if let a = IPv6Address(text) { self = .v6(a) } else { return nil }
    }

    public var description: String {
        switch self {
        case .v4(let a): return a.description
        case .v6(let a): return a.description
        }
    }

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
                raw[0] = v.bytes.0; raw[1] = v.bytes.1; raw[2] = v.bytes.2; raw[3] = v.bytes.3
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

    /// Why this address cannot be a VIP or a backend, or nil if it can.
    var unusableReason: String? {
        switch self {
        case .v4(let a):
            let b = a.bytes
            if a.hostOrder == 0 { return "the unspecified address" }
            if a.hostOrder == 0xFFFF_FFFF { return "the broadcast address" }
            if b.0 == 127 { return "a loopback address" }
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

/// An address and a port: `198.18.0.10:80` or `[2001:2::10]:80`.
public struct Endpoint: Hashable, Sendable, CustomStringConvertible {
    public var address: IPAddress
    public var port: UInt16

    public init(address: IPAddress, port: UInt16) {
        self.address = address
        self.port = port
    }

    /// Parses `IP:PORT` or `[IPv6]:PORT`; the port must be 1...65535.
    public init(parsing text: String) throws(BalancerError) {
        let host: Substring, portText: Substring
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]"), text[text.index(after: close)...].hasPrefix(":") else {
                throw .malformedEndpoint(text, "expected [IPv6]:PORT")
            }
            host = text[text.index(after: text.startIndex)..<close]
            portText = text[text.index(close, offsetBy: 2)...]
        } else {
            guard let colon = text.lastIndex(of: ":") else { throw .malformedEndpoint(text, "expected IP:PORT") }
            host = text[..<colon]
            portText = text[text.index(after: colon)...]
            if host.contains(":") { throw .malformedEndpoint(text, "write IPv6 endpoints as [IPv6]:PORT") }
        }
        guard let address = IPAddress(String(host)) else { throw .malformedEndpoint(text, "'\(host)' is not an IP address") }
        guard !portText.isEmpty, portText.allSatisfy(\.isASCIIDigit), portText.count <= 5, let port = Int(portText),
              (1...65535).contains(port) else {
            throw .malformedEndpoint(text, "port '\(portText)' is not in 1...65535")
        }
        self.init(address: address, port: UInt16(port))
    }

    public var description: String {
        switch address {
        case .v4: return "\(address):\(port)"
        case .v6: return "[\(address)]:\(port)"
        }
    }
}

/// A backend of a service: an endpoint and its weight.
public struct Backend: Hashable, Sendable {
    public var endpoint: Endpoint
    /// Relative share of new connections, 1...10000.
    public var weight: Int

    public static let weightRange = 1...10_000

    public init(endpoint: Endpoint, weight: Int = 1) {
        self.endpoint = endpoint
        self.weight = weight
    }

    /// Parses `IP:PORT[,weight=N]`.
    public init(parsing text: String) throws(BalancerError) {
        let parts = text.split(separator: ",", omittingEmptySubsequences: false)
        endpoint = try Endpoint(parsing: String(parts[0]))
        weight = 1
        for option in parts.dropFirst() {
            let kv = option.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard kv.count == 2, kv[0] == "weight" else {
                throw .malformedEndpoint(text, "unknown backend option '\(option)' (expected weight=N)")
            }
            guard let w = Int(kv[1]), Self.weightRange.contains(w) else {
                throw .malformedEndpoint(text, "weight '\(kv[1])' is not in \(Self.weightRange.lowerBound)...\(Self.weightRange.upperBound)")
            }
            weight = w
        }
    }
}

extension Character {
    var isASCIIDigit: Bool { ("0"..."9").contains(self) }
}
