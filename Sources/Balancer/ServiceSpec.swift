import DatapathABI
import ProxyProtocol

/// Which PROXY header, if any, a service writes towards its backends.
public enum ProxyMode: String, Sendable, CaseIterable {
    /// No header: plain full NAT.
    case none
    /// The text header, `PROXY TCP4 ...\r\n`.
    case v1
    /// The binary header, with the service's TLVs.
    case v2
}

/// A service as the user describes it: a VIP, backends, and what the backends are told.
public struct ServiceSpec: Hashable, Sendable {
    /// The address and port clients connect to.
    public var vip: Endpoint
    /// Where connections go, in the order of their indexes in the datapath.
    public var backends: [Backend]
    /// The header the backends get.
    public var proxy: ProxyMode
    /// Source addresses towards the backends (a SNAT pool); empty: the instance's
    /// default pool, else the egress route's source address.
    public var snat: [IPAddress]
    /// TLVs every v2 header carries (custom, cloud).
    public var tlvs: [ProxyTLV]
    /// A UNIQUE_ID TLV, new for every connection (v2).
    public var uniqueID: Bool
    /// A CRC32C TLV computed in the kernel (v2).
    public var crc32c: Bool
    /// Marked as speaking first (SMTP, IMAP, MySQL...): recorded (PPCTL_SVC_SERVER_FIRST,
    /// listed, kept by reconciles) but changing nothing. Every header service gets its
    /// local clients' headers on the handshake ACK at tc egress where tc is attached
    /// towards the backend (docs/datapath.md, "Local clients").
    public var serverFirst: Bool
    /// The size of the service's Maglev table when chosen by hand (a prime up to
    /// `Maglev.maxSize`); nil: the size rule, `Maglev.tableSize(backends:)`.
    public var tableSize: Int?

    /// Backends a service can have: backend ids hold 8-bit indexes
    /// (PPCTL_BACKEND_ID, PPCTL_MAX_SERVICE_BACKENDS).
    public static let maxBackends = Int(PPCTL_MAX_SERVICE_BACKENDS)

    /// The size of the service's Maglev table: `tableSize`, else the size rule for
    /// its configured backends (down or draining ones count: health never changes
    /// the size).
    public var maglevSize: Int { tableSize ?? Maglev.tableSize(backends: backends.count) }

    /// A service; nothing is checked until `validate()`.
    public init(
        vip: Endpoint, backends: [Backend], proxy: ProxyMode = .none, snat: [IPAddress] = [],
        tlvs: [ProxyTLV] = [], uniqueID: Bool = false, crc32c: Bool = false, serverFirst: Bool = false,
        tableSize: Int? = nil
    ) {
        self.vip = vip
        self.backends = backends
        self.proxy = proxy
        self.snat = snat
        self.tlvs = tlvs
        self.uniqueID = uniqueID
        self.crc32c = crc32c
        self.serverFirst = serverFirst
        self.tableSize = tableSize
    }

    /// Checks everything that can be checked without the maps: usable addresses
    /// of one family (no IPv4-mapped IPv6), an SNAT address other than the VIP's,
    /// 0 to `maxBackends` distinct backends none of which is the VIP,
    /// weights in `Backend.weightRange`, TLV options only with v2 and within
    /// PPCTL_MAX_SERVICE_TLV_LEN. Throws the first problem found.
    public func validate() throws(BalancerError) {
        try Self.checkUsable(vip.address)
        try SNATPool.validate(snat)
        if let a = snat.first, a.family != vip.address.family { throw .mixedFamilies(vip.description, "--snat \(a)") }
        if snat.contains(vip.address) { throw .snatIsVIP(vip.address.description) }
        guard backends.count <= Self.maxBackends else { throw .tooManyBackends(backends.count, limit: Self.maxBackends) }
        if let tableSize, !Maglev.isValidSize(tableSize) {
            throw .contradiction("table size \(tableSize) is not a prime in 2...\(Maglev.maxSize)")
        }
        var seen = Set<Endpoint>()
        for b in backends {
            try Self.checkUsable(b.endpoint.address)
            guard b.endpoint.address.family == vip.address.family else { throw .mixedFamilies(vip.description, "backend \(b.endpoint)") }
            guard b.endpoint != vip else { throw .backendIsVIP(b.endpoint.description) }
            guard seen.insert(b.endpoint).inserted else { throw .duplicateBackend(b.endpoint.description) }
            guard Backend.weightRange.contains(b.weight) else {
                throw .malformedEndpoint("\(b.endpoint),weight=\(b.weight)", "weight \(b.weight) is not in \(Backend.weightRange)")
            }
        }
        if proxy != .v2 && (!tlvs.isEmpty || uniqueID || crc32c) {
            throw .contradiction("TLVs, --unique-id and --crc32c need a PROXY v2 service (--proxy v2)")
        }
        if proxy == .none && serverFirst {
            throw .contradiction("--server-first is about where the PROXY header goes: give --proxy v1 or v2")
        }
        let encoded = try encodedTLVs()
        guard encoded.count <= Int(PPCTL_MAX_SERVICE_TLV_LEN) else {
            throw .invalidTLV("\(encoded.count) bytes of TLVs exceed the limit of \(PPCTL_MAX_SERVICE_TLV_LEN)")
        }
    }

    /// Throws `.ipv4Mapped` or `.unusableAddress` if `address` cannot be a VIP,
    /// backend or SNAT address.
    static func checkUsable(_ address: IPAddress) throws(BalancerError) {
        if let ipv4 = address.ipv4Mapped { throw .ipv4Mapped("::ffff:\(ipv4)", ipv4: ipv4.description) }
        if let why = address.unusableReason { throw .unusableAddress(address.description, why) }
    }

    /// The service TLVs as they go on the wire.
    public func encodedTLVs() throws(BalancerError) -> [UInt8] {
        var out: [UInt8] = []
        for t in tlvs {
            guard t.value.count <= 0xFFFF else { throw .invalidTLV("value of type 0x\(String(t.type, radix: 16)) too long") }
            out += [t.type, UInt8(t.value.count >> 8), UInt8(t.value.count & 0xff)] + t.value
        }
        return out
    }

    /// The longest header a connection of this service can carry, in bytes.
    public var maxHeaderLength: Int {
        switch proxy {
        case .none: return 0
        case .v1:
            return Int(vip.address.family == UInt8(PPCTL_FAMILY_IPV4) ? PPCTL_PP1_MAX_LEN_IPV4 : PPCTL_PP1_MAX_LEN_IPV6)
        case .v2:
            let addresses = vip.address.family == UInt8(PPCTL_FAMILY_IPV4) ? PPCTL_PP2_ADDR_LEN_IPV4 : PPCTL_PP2_ADDR_LEN_IPV6
            let tlvBytes = (try? encodedTLVs().count) ?? 0
            return Int(PPCTL_PP2_HEADER_LEN) + Int(addresses) + tlvBytes
                + (uniqueID ? Int(PPCTL_PP2_UNIQUE_ID_TLV_LEN) : 0) + (crc32c ? Int(PPCTL_PP2_CRC32C_TLV_LEN) : 0)
        }
    }

    /// The datapath's flags for this service.
    var flags: UInt32 {
        var f: UInt32 = 0
        if proxy == .v2 { f |= UInt32(PPCTL_SVC_PROXY_V2) }
        if proxy == .v1 { f |= UInt32(PPCTL_SVC_PROXY_V1) }
        if !snat.isEmpty { f |= UInt32(PPCTL_SVC_SNAT_POOL) }
        if uniqueID { f |= UInt32(PPCTL_SVC_UNIQUE_ID) }
        if crc32c { f |= UInt32(PPCTL_SVC_CRC32C) }
        if serverFirst { f |= UInt32(PPCTL_SVC_SERVER_FIRST) }
        return f
    }

    /// The TLVs of a service, as `service add` and ppctld's file give them: custom
    /// TLVs in `parseTLV`'s form, then the cloud TLVs (AWS VPC endpoint id, printable
    /// ASCII; Azure private link id; GCP PSC connection id). Throws `.invalidTLV`
    /// for a bad one or a type given twice.
    public static func tlvs(
        custom: [String], awsVpceId: String? = nil, azureLinkId: UInt32? = nil,
        gcpPscId: UInt64? = nil
    ) throws(BalancerError) -> [ProxyTLV] {
        var parsed: [ProxyTLV] = []
        for text in custom { parsed.append(try parseTLV(text)) }
        return try tlvs(parsed: parsed, awsVpceId: awsVpceId, azureLinkId: azureLinkId, gcpPscId: gcpPscId)
    }

    /// The same, with the custom TLVs already parsed (the CLI parses each
    /// `--tlv` where ArgumentParser reads it).
    public static func tlvs(
        parsed custom: [ProxyTLV], awsVpceId: String? = nil, azureLinkId: UInt32? = nil,
        gcpPscId: UInt64? = nil
    ) throws(BalancerError) -> [ProxyTLV] {
        var tlvs = custom
        if let awsVpceId {
            guard !awsVpceId.isEmpty, awsVpceId.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7f }) else {
                throw .invalidTLV("--aws-vpce-id must be printable ASCII")
            }
            tlvs.append(.awsVPCEndpointID(awsVpceId))
        }
        if let azureLinkId { tlvs.append(.azureLinkID(azureLinkId)) }
        if let gcpPscId { tlvs.append(.gcpPSCConnectionID(gcpPscId)) }
        let types = tlvs.map(\.type)
        if Set(types).count != types.count { throw .invalidTLV("the same TLV type is given twice") }
        return tlvs
    }

    /// Parses a custom TLV given as `0xE5=text` or `0xE5=hex:0a0b`. Types 0xE0-0xEF.
    public static func parseTLV(_ text: String) throws(BalancerError) -> ProxyTLV {
        let kv = text.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
        guard kv.count == 2 else { throw .invalidTLV("'\(text)' is not TYPE=VALUE") }
        let typeText = kv[0].lowercased()
        guard typeText.hasPrefix("0x"), let type = UInt8(typeText.dropFirst(2), radix: 16), (0xE0...0xEF).contains(type) else {
            throw .invalidTLV("type '\(kv[0])' is not in 0xE0...0xEF (custom TLVs)")
        }
        let valueText = kv[1]
        if valueText.hasPrefix("hex:") {
            let hex = valueText.dropFirst(4)
            guard hex.count % 2 == 0, !hex.isEmpty else { throw .invalidTLV("'\(valueText)' is not an even number of hex digits") }
            var bytes: [UInt8] = []
            var i = hex.startIndex
            while i < hex.endIndex {
                let j = hex.index(i, offsetBy: 2)
                guard let b = UInt8(hex[i..<j], radix: 16) else { throw .invalidTLV("'\(valueText)' has a non-hex digit") }
                bytes.append(b)
                i = j
            }
            return ProxyTLV(type: type, value: bytes)
        }
        guard !valueText.isEmpty else { throw .invalidTLV("empty value for type \(kv[0])") }
        return ProxyTLV(type: type, value: Array(valueText.utf8))
    }
}
