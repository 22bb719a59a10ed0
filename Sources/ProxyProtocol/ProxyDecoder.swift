/// Reads a PROXY header from the first bytes of a connection, incrementally.
///
/// Give it everything received so far; it answers `.needMoreData` until the whole
/// header is there, then `.header(_, consumed:)` (the bytes after `consumed` are the
/// client's payload, untouched), or `.invalid` with the precise reason. It never
/// reads past the header and never guesses: the caller decides that a header must
/// be there and which versions it accepts.
///
/// ```swift
/// switch ProxyDecoder().decode(received) {
/// case .header(let header, let consumed): serve(header, payload: received[consumed...])
/// case .needMoreData: readMore()
/// case .invalid(let error): close(because: error)
/// }
/// ```
public struct ProxyDecoder: Sendable {
    /// Limits and choices of a decoder.
    public struct Configuration: Hashable, Sendable {
        /// Accept v1 (text) headers.
        public var acceptV1: Bool = true
        /// Accept v2 (binary) headers.
        public var acceptV2: Bool = true
        /// Longest v2 header (16 + length) accepted; at most 65551.
        public var maxHeaderLength: Int = 4096
        /// Longest TLV value accepted.
        public var maxTLVValueLength: Int = 4096
        /// Check the CRC32C TLV when present (a mismatch is `.crc32cMismatch`).
        public var verifyCRC32C: Bool = true

        public init() {}
    }

    /// The answer for the bytes received so far.
    public enum Result: Hashable, Sendable {
        /// The header is not complete: at least this many more bytes are needed.
        case needMoreData(atLeast: Int)
        /// The bytes are not a valid header (of an accepted version).
        case invalid(ProxyProtocolError)
        /// A header, and how many bytes it took.
        case header(ProxyHeader, consumed: Int)
    }

    public var configuration: Configuration

    public init(configuration: Configuration = .init()) {
        self.configuration = configuration
    }

    /// Decodes from an array (see the type's documentation).
    @inlinable
    public func decode(_ bytes: [UInt8]) -> Result {
        bytes.withUnsafeBytes { decode($0) }
    }

    /// Decodes from a slice (see the type's documentation).
    @inlinable
    public func decode(_ bytes: ArraySlice<UInt8>) -> Result {
        bytes.withUnsafeBytes { decode($0) }
    }

    /// Decodes from raw bytes (see the type's documentation).
    public func decode(_ b: UnsafeRawBufferPointer) -> Result {
        guard !b.isEmpty else { return .needMoreData(atLeast: 1) }
        if b[0] == 0x0D {
            let n = min(b.count, 12)
            for i in 0..<n where b[i] != proxyV2Signature[i] { return .invalid(.badSignature) }
            guard configuration.acceptV2 else { return .invalid(.versionNotAccepted(.v2)) }
            return decodeV2(b)
        }
        if b[0] == UInt8(ascii: "P") {
            let prefix: [UInt8] = Array("PROXY ".utf8)
            let n = min(b.count, 6)
            for i in 0..<n where b[i] != prefix[i] { return .invalid(.badSignature) }
            guard configuration.acceptV1 else { return .invalid(.versionNotAccepted(.v1)) }
            return decodeV1(b)
        }
        return .invalid(.badSignature)
    }

    // MARK: - v2

    private func decodeV2(_ b: UnsafeRawBufferPointer) -> Result {
        guard b.count >= 16 else { return .needMoreData(atLeast: 16 - b.count) }
        let versionCommand = b[12]
        guard versionCommand >> 4 == 2 else { return .invalid(.unsupportedVersion(versionCommand >> 4)) }
        guard let command = ProxyHeader.Command(rawValue: versionCommand & 0x0f) else {
            return .invalid(.invalidCommand(versionCommand & 0x0f))
        }
        let family = b[13]
        guard let addressLength = ProxyHeader.addressLength(family: family) else {
            return .invalid(.unknownFamily(family))
        }
        let length = Int(b[14]) << 8 | Int(b[15])
        let total = 16 + length
        guard total <= configuration.maxHeaderLength else {
            return .invalid(.headerTooLong(length: total, limit: configuration.maxHeaderLength))
        }
        guard length >= addressLength else {
            return .invalid(.lengthTooShortForFamily(family: family, length: length))
        }
        guard b.count >= total else { return .needMoreData(atLeast: total - b.count) }

        var addresses = ProxyHeader.Addresses.unspecified
        if command == .proxy {
            let transport = ProxyHeader.Transport(rawValue: family & 0x0f) ?? .stream
            switch family >> 4 {
            case 1:
                addresses = .ipv4(
                    source: IPv4Address(b[16], b[17], b[18], b[19]), sourcePort: port(b, 24),
                    destination: IPv4Address(b[20], b[21], b[22], b[23]), destinationPort: port(b, 26),
                    transport: transport)
            case 2:
                addresses = .ipv6(
                    source: IPv6Address(bytes: Array(b[16..<32]))!, sourcePort: port(b, 48),
                    destination: IPv6Address(bytes: Array(b[32..<48]))!, destinationPort: port(b, 50),
                    transport: transport)
            case 3:
                addresses = .unix(
                    source: trimmed(Array(b[16..<124])), destination: trimmed(Array(b[124..<232])),
                    transport: transport)
            default:
                break
            }
        }

        var tlvs: [ProxyTLV] = []
        var offset = 16 + addressLength
        var crcValueOffset = -1
        while offset < total {
            guard total - offset >= 3 else { return .invalid(.truncatedTLVHeader(offset: offset)) }
            let type = b[offset]
            let tlvLength = Int(b[offset + 1]) << 8 | Int(b[offset + 2])
            guard total - offset - 3 >= tlvLength else {
                return .invalid(.tlvOverrunsHeader(type: type, length: tlvLength))
            }
            guard tlvLength <= configuration.maxTLVValueLength else {
                return .invalid(.tlvTooLong(type: type, length: tlvLength, limit: configuration.maxTLVValueLength))
            }
            if type == ProxyTLV.Kind.uniqueID.rawValue && tlvLength > 128 {
                return .invalid(.uniqueIDTooLong(tlvLength))
            }
            if type == ProxyTLV.Kind.crc32c.rawValue {
                guard tlvLength == 4 else { return .invalid(.badCRC32CLength(tlvLength)) }
                crcValueOffset = offset + 3
            }
            tlvs.append(ProxyTLV(type: type, value: Array(b[(offset + 3)..<(offset + 3 + tlvLength)])))
            offset += 3 + tlvLength
        }

        if crcValueOffset >= 0 && configuration.verifyCRC32C {
            let stated =
                UInt32(b[crcValueOffset]) << 24 | UInt32(b[crcValueOffset + 1]) << 16
                | UInt32(b[crcValueOffset + 2]) << 8 | UInt32(b[crcValueOffset + 3])
            var crc = CRC32C.update(0xFFFF_FFFF, UnsafeRawBufferPointer(rebasing: b[0..<crcValueOffset]))
            withUnsafeBytes(of: UInt32(0)) { crc = CRC32C.update(crc, $0) }
            crc = CRC32C.update(crc, UnsafeRawBufferPointer(rebasing: b[(crcValueOffset + 4)..<total]))
            crc ^= 0xFFFF_FFFF
            guard crc == stated else { return .invalid(.crc32cMismatch(expected: crc, actual: stated)) }
        }
        return .header(ProxyHeader(version: .v2, command: command, addresses: addresses, tlvs: tlvs), consumed: total)
    }

    @inline(__always)
    private func port(_ b: UnsafeRawBufferPointer, _ at: Int) -> UInt16 {
        UInt16(b[at]) << 8 | UInt16(b[at + 1])
    }

    private func trimmed(_ path: [UInt8]) -> [UInt8] {
        if let nul = path.firstIndex(of: 0) { return Array(path[..<nul]) }
        return path
    }

    // MARK: - v1

    /// The longest v1 line, CRLF included.
    public static let v1MaxLength = 107

    private func decodeV1(_ b: UnsafeRawBufferPointer) -> Result {
        let limit = min(b.count, Self.v1MaxLength)
        var end = -1
        var i = 0
        while i < limit {
            let c = b[i]
            if c == 0x0D {
                if i + 1 >= b.count { return .needMoreData(atLeast: 1) }
                if i + 1 >= Self.v1MaxLength { return .invalid(.v1MissingCRLF) }
                guard b[i + 1] == 0x0A else { return .invalid(.v1BareCROrLF) }
                end = i
                break
            }
            if c == 0x0A { return .invalid(.v1BareCROrLF) }
            if c < 0x20 || c > 0x7E { return .invalid(.v1InvalidCharacter(c)) }
            i += 1
        }
        guard end >= 0 else {
            return b.count >= Self.v1MaxLength ? .invalid(.v1MissingCRLF) : .needMoreData(atLeast: 1)
        }

        // Fields separated by exactly one space (at most 8 are looked at).
        var f0 = 0..<0, f1 = 0..<0, f2 = 0..<0, f3 = 0..<0, f4 = 0..<0, f5 = 0..<0
        var count = 0, start = 0, sawEmpty = false
        for j in 0...end where j == end || b[j] == 0x20 {
            let r = start..<j
            switch count {
            case 0: f0 = r
            case 1: f1 = r
            case 2: f2 = r
            case 3: f3 = r
            case 4: f4 = r
            case 5: f5 = r
            default: break
            }
            if r.isEmpty { sawEmpty = true }
            count += 1
            start = j + 1
        }
        _ = f0
        guard count >= 2 else { return .invalid(.v1WrongFieldCount(count)) }
        let consumed = end + 2
        if matches(b, f1, "UNKNOWN") {
            // Whatever follows UNKNOWN is ignored (spec 2.1).
            return .header(ProxyHeader(version: .v1, command: .local, addresses: .unspecified), consumed: consumed)
        }
        let isV4 = matches(b, f1, "TCP4")
        guard isV4 || matches(b, f1, "TCP6") else { return .invalid(.v1UnknownProtocol(text(b, f1))) }
        guard count == 6, !sawEmpty else { return .invalid(.v1WrongFieldCount(count)) }
        let fields = (f2, f3, f4, f5)
        let sp: UInt16, dp: UInt16
        switch (parsePort(b, fields.2), parsePort(b, fields.3)) {
        case (.failure(let e), _), (_, .failure(let e)): return .invalid(e)
        case (.success(let s), .success(let d)):
            sp = s
            dp = d
        }
        if isV4 {
            guard let s = parseIPv4(b, fields.0) else { return .invalid(v4Error(text(b, fields.0))) }
            guard let d = parseIPv4(b, fields.1) else { return .invalid(v4Error(text(b, fields.1))) }
            return .header(
                ProxyHeader(
                    version: .v1, command: .proxy,
                    addresses: .ipv4(
                        source: s, sourcePort: sp, destination: d,
                        destinationPort: dp, transport: .stream)),
                consumed: consumed)
        }
        let st = text(b, fields.0), dt = text(b, fields.1)
        guard let s = IPv6Address(st) else { return .invalid(v6Error(st)) }
        guard let d = IPv6Address(dt) else { return .invalid(v6Error(dt)) }
        return .header(
            ProxyHeader(
                version: .v1, command: .proxy,
                addresses: .ipv6(
                    source: s, sourcePort: sp, destination: d,
                    destinationPort: dp, transport: .stream)),
            consumed: consumed)
    }

    private func matches(_ b: UnsafeRawBufferPointer, _ r: Range<Int>, _ word: StaticString) -> Bool {
        guard r.count == word.utf8CodeUnitCount else { return false }
        let w = word.utf8Start
        for (k, i) in r.enumerated() where b[i] != w[k] { return false }
        return true
    }

    private func text(_ b: UnsafeRawBufferPointer, _ r: Range<Int>) -> String {
        String(decoding: UnsafeRawBufferPointer(rebasing: b[r]), as: UTF8.self)
    }

    private func parseIPv4(_ b: UnsafeRawBufferPointer, _ r: Range<Int>) -> IPv4Address? {
        var octets: (Int, Int, Int, Int) = (0, 0, 0, 0)
        var index = 0, value = 0, digits = 0, leadingZero = false
        for i in r {
            let c = b[i]
            if c == UInt8(ascii: ".") {
                guard digits > 0, !leadingZero || digits == 1, value <= 255, index < 3 else { return nil }
                switch index {
                case 0: octets.0 = value
                case 1: octets.1 = value
                default: octets.2 = value
                }
                index += 1
                value = 0
                digits = 0
                leadingZero = false
                continue
            }
            guard c >= 48 && c <= 57, digits < 3 else { return nil }
            if digits == 0 && c == 48 { leadingZero = true }
            value = value * 10 + Int(c - 48)
            digits += 1
        }
        guard index == 3, digits > 0, !leadingZero || digits == 1, value <= 255 else { return nil }
        octets.3 = value
        return IPv4Address(UInt8(octets.0), UInt8(octets.1), UInt8(octets.2), UInt8(octets.3))
    }

    private func v4Error(_ t: String) -> ProxyProtocolError {
        if IPv6Address(t) != nil { return .v1FamilyMismatch(t) }
        let parts = t.split(separator: ".", omittingEmptySubsequences: false)
        if parts.count == 4 && parts.allSatisfy({ p in !p.isEmpty && p.utf8.allSatisfy { $0 >= 48 && $0 <= 57 } })
            && parts.contains(where: { $0.count > 1 && $0.first == "0" })
        {
            return .v1LeadingZero(t)
        }
        return .v1InvalidAddress(t)
    }

    private func v6Error(_ t: String) -> ProxyProtocolError {
        IPv4Address(t) != nil ? .v1FamilyMismatch(t) : .v1InvalidAddress(t)
    }

    private func parsePort(_ b: UnsafeRawBufferPointer, _ r: Range<Int>) -> Swift.Result<UInt16, ProxyProtocolError> {
        guard (1...5).contains(r.count) else { return .failure(.v1InvalidPort(text(b, r))) }
        var value = 0
        for i in r {
            let c = b[i]
            guard c >= 48 && c <= 57 else { return .failure(.v1InvalidPort(text(b, r))) }
            value = value * 10 + Int(c - 48)
        }
        if r.count > 1 && b[r.lowerBound] == 48 { return .failure(.v1LeadingZero(text(b, r))) }
        guard value <= 65535 else { return .failure(.v1InvalidPort(text(b, r))) }
        return .success(UInt16(value))
    }
}
