/// A PROXY protocol header (HAProxy's proxy-protocol.txt), version 1 or 2.
public struct ProxyHeader: Hashable, Sendable {
    /// The protocol version the header was read as, or is to be written as.
    public enum Version: UInt8, Hashable, Sendable {
        case v1 = 1
        case v2 = 2
    }

    /// LOCAL: a connection made by the proxy itself (health check); the receiver uses
    /// the real connection's addresses. PROXY: a relayed connection.
    public enum Command: UInt8, Hashable, Sendable {
        case local = 0
        case proxy = 1
    }

    /// Stream (TCP, UNIX stream) or datagram (UDP, UNIX dgram).
    public enum Transport: UInt8, Hashable, Sendable {
        case stream = 1
        case datagram = 2
    }

    /// What the header says about the original connection.
    public enum Addresses: Hashable, Sendable {
        /// No address information (v2 family UNSPEC, v1 UNKNOWN).
        case unspecified
        /// IPv4 (v2 family 0x1, v1 TCP4).
        case ipv4(
            source: IPv4Address, sourcePort: UInt16, destination: IPv4Address,
            destinationPort: UInt16, transport: Transport)
        /// IPv6 (v2 family 0x2, v1 TCP6).
        case ipv6(
            source: IPv6Address, sourcePort: UInt16, destination: IPv6Address,
            destinationPort: UInt16, transport: Transport)
        /// UNIX socket paths (v2 family 0x3), each 108 bytes, NUL-padded.
        case unix(source: [UInt8], destination: [UInt8], transport: Transport)
    }

    public var version: Version
    public var command: Command
    public var addresses: Addresses
    /// The TLVs (v2 only), in wire order.
    public var tlvs: [ProxyTLV]

    /// Creates a header. v1 headers carry no TLVs and no UNIX or datagram addresses;
    /// `ProxyEncoder` rejects those combinations.
    public init(
        version: Version = .v2, command: Command = .proxy, addresses: Addresses,
        tlvs: [ProxyTLV] = []
    ) {
        self.version = version
        self.command = command
        self.addresses = addresses
        self.tlvs = tlvs
    }

    /// The v2 family/transport byte for these addresses.
    var familyByte: UInt8 {
        switch addresses {
        case .unspecified: return 0x00
        case .ipv4(_, _, _, _, let t): return 0x10 | t.rawValue
        case .ipv6(_, _, _, _, let t): return 0x20 | t.rawValue
        case .unix(_, _, let t): return 0x30 | t.rawValue
        }
    }

    /// Length of the v2 address block for a family byte, or nil if unknown.
    static func addressLength(family: UInt8) -> Int? {
        switch family {
        case 0x00: return 0
        case 0x11, 0x12: return 12
        case 0x21, 0x22: return 36
        case 0x31, 0x32: return 216
        default: return nil
        }
    }
}

// MARK: - Typed TLV accessors

extension ProxyHeader {
    /// The first TLV of a type, if any.
    public func tlv(_ type: ProxyTLV.Kind) -> ProxyTLV? { tlvs.first { $0.type == type.rawValue } }

    /// ALPN (0x01): the negotiated application protocol, e.g. "h2".
    public var alpn: [UInt8]? { tlv(.alpn)?.value }
    /// AUTHORITY (0x02): the host name the client asked for (usually the SNI), as UTF-8.
    public var authority: String? { tlv(.authority).flatMap { String(validating: $0.value, as: UTF8.self) } }
    /// CRC32C (0x03): the checksum carried by the header (verified by the decoder).
    public var crc32c: UInt32? {
        guard let v = tlv(.crc32c)?.value, v.count == 4 else { return nil }
        return UInt32(v[0]) << 24 | UInt32(v[1]) << 16 | UInt32(v[2]) << 8 | UInt32(v[3])
    }
    /// UNIQUE_ID (0x05): an opaque connection identifier of at most 128 bytes.
    public var uniqueID: [UInt8]? { tlv(.uniqueID)?.value }
    /// NETNS (0x30): the network namespace name.
    public var netns: String? { tlv(.netns).flatMap { String(validating: $0.value, as: UTF8.self) } }
    /// SSL (0x20) with its sub-TLVs. Throws `ProxyProtocolError.malformedSSL` if the TLV is
    /// present but does not parse.
    public func ssl() throws(ProxyProtocolError) -> ProxySSLInfo? {
        guard let v = tlv(.ssl)?.value else { return nil }
        return try ProxySSLInfo(parsing: v)
    }
    /// AWS (0xEA, subtype 0x01): the VPC endpoint id, ASCII.
    public var awsVPCEndpointID: String? { tlv(.aws)?.awsVPCEndpointID }
    /// Azure (0xEE, subtype 0x01): the private endpoint LINKID, a little-endian u32.
    public var azureLinkID: UInt32? { tlv(.azure)?.azureLinkID }
    /// GCP (0xE0): the Private Service Connect connection id, a big-endian u64.
    public var gcpPSCConnectionID: UInt64? { tlv(.gcp)?.gcpPSCConnectionID }
}
