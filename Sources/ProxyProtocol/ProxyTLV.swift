/// One type-length-value field of a v2 header.
public struct ProxyTLV: Hashable, Sendable {
    /// The TLV types the spec and the cloud providers define.
    public enum Kind: UInt8, Sendable {
        case alpn = 0x01
        case authority = 0x02
        case crc32c = 0x03
        case noop = 0x04
        case uniqueID = 0x05
        case ssl = 0x20
        case netns = 0x30
        case gcp = 0xE0
        case aws = 0xEA
        case azure = 0xEE
    }

    public var type: UInt8
    public var value: [UInt8]

    /// Creates a TLV. The value must be at most 65535 bytes (the encoder checks).
    public init(type: UInt8, value: [UInt8]) {
        self.type = type
        self.value = value
    }

    /// Creates a TLV of a known kind.
    public init(_ kind: Kind, _ value: [UInt8]) { self.init(type: kind.rawValue, value: value) }

    /// A readable name for the type ("ALPN", "custom 0xE5", ...).
    public var name: String {
        switch type {
        case 0x01: return "ALPN"
        case 0x02: return "AUTHORITY"
        case 0x03: return "CRC32C"
        case 0x04: return "NOOP"
        case 0x05: return "UNIQUE_ID"
        case 0x20: return "SSL"
        case 0x21: return "SSL_VERSION"
        case 0x22: return "SSL_CN"
        case 0x23: return "SSL_CIPHER"
        case 0x24: return "SSL_SIG_ALG"
        case 0x25: return "SSL_KEY_ALG"
        case 0x26: return "SSL_GROUP"
        case 0x27: return "SSL_SIG_SCHEME"
        case 0x28: return "SSL_CLIENT_CERT"
        case 0x30: return "NETNS"
        case 0xE0: return "GCP"
        case 0xEA: return "AWS"
        case 0xEE: return "AZURE"
        case 0xE1...0xEF: return "CUSTOM"
        case 0xF0...0xF7: return "EXPERIMENTAL"
        default: return "UNKNOWN"
        }
    }

    // MARK: - Builders

    /// ALPN (0x01).
    public static func alpn(_ protocolName: String) -> ProxyTLV { .init(.alpn, Array(protocolName.utf8)) }
    /// AUTHORITY (0x02), UTF-8.
    public static func authority(_ host: String) -> ProxyTLV { .init(.authority, Array(host.utf8)) }
    /// NOOP (0x04): padding of `count` zero bytes.
    public static func noop(_ count: Int) -> ProxyTLV { .init(.noop, Array(repeating: 0, count: count)) }
    /// UNIQUE_ID (0x05); at most 128 bytes (the encoder checks).
    public static func uniqueID(_ id: [UInt8]) -> ProxyTLV { .init(.uniqueID, id) }
    /// NETNS (0x30).
    public static func netns(_ name: String) -> ProxyTLV { .init(.netns, Array(name.utf8)) }
    /// AWS (0xEA): subtype 0x01 followed by the VPC endpoint id.
    public static func awsVPCEndpointID(_ id: String) -> ProxyTLV { .init(.aws, [0x01] + Array(id.utf8)) }
    /// Azure (0xEE): subtype 0x01 followed by the LINKID, little-endian.
    public static func azureLinkID(_ id: UInt32) -> ProxyTLV {
        .init(.azure, [0x01, UInt8(id & 0xff), UInt8((id >> 8) & 0xff), UInt8((id >> 16) & 0xff), UInt8(id >> 24)])
    }
    /// GCP (0xE0): the PSC connection id, big-endian, 8 bytes.
    public static func gcpPSCConnectionID(_ id: UInt64) -> ProxyTLV {
        .init(.gcp, (0..<8).map { UInt8((id >> (56 - 8 * UInt64($0))) & 0xff) })
    }
    /// SSL (0x20) from its parts.
    public static func ssl(_ info: ProxySSLInfo) -> ProxyTLV { .init(.ssl, info.encoded) }

    // MARK: - Typed values

    /// The VPC endpoint id of an AWS TLV (0xEA, subtype 0x01, UTF-8); nil for another
    /// type, subtype or encoding.
    public var awsVPCEndpointID: String? {
        guard type == Kind.aws.rawValue, value.first == 0x01 else { return nil }
        return String(validating: value.dropFirst(), as: UTF8.self)
    }
    /// The private endpoint LINKID of an Azure TLV (0xEE, subtype 0x01, a little-endian
    /// u32); nil for another type, subtype or length.
    public var azureLinkID: UInt32? {
        guard type == Kind.azure.rawValue, value.count == 5, value[0] == 0x01 else { return nil }
        return UInt32(value[1]) | UInt32(value[2]) << 8 | UInt32(value[3]) << 16 | UInt32(value[4]) << 24
    }
    /// The Private Service Connect connection id of a GCP TLV (0xE0, a big-endian u64);
    /// nil for another type or length.
    public var gcpPSCConnectionID: UInt64? {
        guard type == Kind.gcp.rawValue, value.count == 8 else { return nil }
        return value.reduce(0) { $0 << 8 | UInt64($1) }
    }
}

/// The SSL TLV (0x20): client flags, verify result, and sub-TLVs.
public struct ProxySSLInfo: Hashable, Sendable {
    /// PP2_CLIENT_SSL 0x01, PP2_CLIENT_CERT_CONN 0x02, PP2_CLIENT_CERT_SESS 0x04.
    public var clientFlags: UInt8
    /// 0 if the client presented a certificate that verified.
    public var verify: UInt32
    /// Sub-TLVs (0x21 VERSION ... 0x28 CLIENT_CERT).
    public var subTLVs: [ProxyTLV]

    public init(clientFlags: UInt8, verify: UInt32, subTLVs: [ProxyTLV] = []) {
        self.clientFlags = clientFlags
        self.verify = verify
        self.subTLVs = subTLVs
    }

    /// Parses the value of an SSL TLV. Throws `.malformedSSL` if it is shorter than 5
    /// bytes or its sub-TLVs do not fill it exactly.
    public init(parsing v: [UInt8]) throws(ProxyProtocolError) {
        guard v.count >= 5 else { throw .malformedSSL("value of \(v.count) bytes, need at least 5") }
        clientFlags = v[0]
        verify = UInt32(v[1]) << 24 | UInt32(v[2]) << 16 | UInt32(v[3]) << 8 | UInt32(v[4])
        subTLVs = []
        var i = 5
        while i < v.count {
            guard v.count - i >= 3 else { throw .malformedSSL("sub-TLV header truncated at \(i)") }
            let len = Int(v[i + 1]) << 8 | Int(v[i + 2])
            guard v.count - i - 3 >= len else { throw .malformedSSL("sub-TLV 0x\(hex(v[i])) overruns the SSL TLV") }
            subTLVs.append(ProxyTLV(type: v[i], value: Array(v[(i + 3)..<(i + 3 + len)])))
            i += 3 + len
        }
    }

    /// SSL version (sub-TLV 0x21), e.g. "TLSv1.3".
    public var version: String? { sub(0x21) }
    /// Client certificate common name (0x22).
    public var commonName: String? { sub(0x22) }
    /// Cipher (0x23).
    public var cipher: String? { sub(0x23) }
    /// Signature algorithm (0x24).
    public var signatureAlgorithm: String? { sub(0x24) }
    /// Key algorithm (0x25).
    public var keyAlgorithm: String? { sub(0x25) }
    /// Key exchange group (0x26).
    public var group: String? { sub(0x26) }
    /// Signature scheme (0x27).
    public var signatureScheme: String? { sub(0x27) }
    /// Client certificate, DER (0x28).
    public var clientCertificate: [UInt8]? { subTLVs.first { $0.type == 0x28 }?.value }

    private func sub(_ type: UInt8) -> String? {
        subTLVs.first { $0.type == type }.flatMap { String(validating: $0.value, as: UTF8.self) }
    }

    var encoded: [UInt8] {
        var out: [UInt8] = [
            clientFlags, UInt8(verify >> 24), UInt8((verify >> 16) & 0xff),
            UInt8((verify >> 8) & 0xff), UInt8(verify & 0xff)
        ]
        for t in subTLVs {
            out.append(t.type)
            out.append(UInt8(t.value.count >> 8))
            out.append(UInt8(t.value.count & 0xff))
            out += t.value
        }
        return out
    }
}

func hex(_ b: UInt8) -> String {
    let digits = Array("0123456789ABCDEF")
    return String([digits[Int(b >> 4)], digits[Int(b & 0xf)]])
}
