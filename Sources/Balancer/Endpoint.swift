import ProxyProtocol

/// An address and a port: `198.18.0.10:80` or `[2001:2::10]:80`.
public struct Endpoint: Hashable, Sendable, CustomStringConvertible {
    /// The address.
    public var address: IPAddress
    /// The TCP port, host order.
    public var port: UInt16

    /// An endpoint; nothing is checked (`ServiceSpec.validate()` does).
    public init(address: IPAddress, port: UInt16) {
        self.address = address
        self.port = port
    }

    /// Parses `IP:PORT` or `[IPv6]:PORT`: a dotted quad without leading zeros or
    /// IPv6 text in brackets, and a decimal port in 1...65535. Throws
    /// `.malformedEndpoint` naming the text and what is wrong with it.
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
        if text.hasPrefix("["), case .v4 = address { throw .malformedEndpoint(text, "brackets are for IPv6 addresses only") }
        guard !portText.isEmpty, portText.allSatisfy(\.isASCIIDigit), portText.count <= 5, let port = Int(portText),
            (1...65535).contains(port)
        else {
            throw .malformedEndpoint(text, "port '\(portText)' is not in 1...65535")
        }
        self.init(address: address, port: UInt16(port))
    }

    /// `IP:PORT`, or `[IPv6]:PORT`: what `init(parsing:)` reads.
    public var description: String {
        switch address {
        case .v4: return "\(address):\(port)"
        case .v6: return "[\(address)]:\(port)"
        }
    }
}

extension Character {
    var isASCIIDigit: Bool { ("0"..."9").contains(self) }
}
