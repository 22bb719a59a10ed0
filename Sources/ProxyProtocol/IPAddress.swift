// MARK: - IPv4Address

/// An IPv4 address, stored in network byte order.
public struct IPv4Address: Hashable, Sendable, CustomStringConvertible {
    /// The four bytes of the address, most significant first.
    public var bytes: (UInt8, UInt8, UInt8, UInt8)

    /// Creates an address from its four bytes, most significant first.
    public init(_ a: UInt8, _ b: UInt8, _ c: UInt8, _ d: UInt8) {
        bytes = (a, b, c, d)
    }

    /// Creates an address from a 32-bit value in host order (`0xC6120102` is 198.18.1.2).
    public init(hostOrder value: UInt32) {
        bytes = (UInt8(value >> 24), UInt8((value >> 16) & 0xff), UInt8((value >> 8) & 0xff), UInt8(value & 0xff))
    }

    /// Parses dotted-quad text strictly: four decimal octets, no leading zeros, none
    /// above 255. Returns nil for anything else.
    public init?(_ text: Substring) {
        var octets: [UInt8] = []
        octets.reserveCapacity(4)
        for part in text.split(separator: ".", omittingEmptySubsequences: false) {
            guard let octet = Self.parseOctet(part) else { return nil }
            octets.append(octet)
        }
        guard octets.count == 4 else { return nil }
        self.init(octets[0], octets[1], octets[2], octets[3])
    }

    /// Parses dotted-quad text strictly; see `init?(_: Substring)`.
    public init?(_ text: String) { self.init(Substring(text)) }

    static func parseOctet(_ part: Substring) -> UInt8? {
        let utf8 = part.utf8
        guard (1...3).contains(utf8.count) else { return nil }
        if utf8.count > 1 && utf8.first == UInt8(ascii: "0") { return nil }
        var value = 0
        for c in utf8 {
            guard c >= 48 && c <= 57 else { return nil }
            value = value * 10 + Int(c - 48)
        }
        return value <= 255 ? UInt8(value) : nil
    }

    /// The address as a 32-bit value in host order.
    public var hostOrder: UInt32 {
        UInt32(bytes.0) << 24 | UInt32(bytes.1) << 16 | UInt32(bytes.2) << 8 | UInt32(bytes.3)
    }

    public var description: String { "\(bytes.0).\(bytes.1).\(bytes.2).\(bytes.3)" }

    public static func == (l: Self, r: Self) -> Bool { l.hostOrder == r.hostOrder }
    public func hash(into hasher: inout Hasher) { hasher.combine(hostOrder) }
}

// MARK: - IPv6Address

/// An IPv6 address, stored as 16 bytes in network byte order.
public struct IPv6Address: Hashable, Sendable, CustomStringConvertible {
    /// The address's 16 bytes, most significant first.
    public var bytes: [UInt8]

    /// Creates an address from 16 bytes. Returns nil if there are not exactly 16.
    public init?(bytes: [UInt8]) {
        guard bytes.count == 16 else { return nil }
        self.bytes = bytes
    }

    /// Parses RFC 4291 text: eight groups of 1-4 hex digits, at most one `::`, and an
    /// optional dotted IPv4 address in place of the last two groups. Returns nil for
    /// anything else (zone ids included).
    public init?(_ text: Substring) {
        var head: [UInt16] = []
        var tail: [UInt16] = []
        var sawDoubleColon = false
        let parts = text.components(separatedBy: "::")
        guard parts.count <= 2 else { return nil }
        sawDoubleColon = parts.count == 2
        func groups(_ s: Substring, allowIPv4: Bool) -> [UInt16]? {
            if s.isEmpty { return [] }
            var out: [UInt16] = []
            let fields = s.split(separator: ":", omittingEmptySubsequences: false)
            for (i, field) in fields.enumerated() {
                if allowIPv4 && i == fields.count - 1 && field.contains(".") {
                    guard let v4 = IPv4Address(field) else { return nil }
                    out.append(UInt16(v4.bytes.0) << 8 | UInt16(v4.bytes.1))
                    out.append(UInt16(v4.bytes.2) << 8 | UInt16(v4.bytes.3))
                    continue
                }
                guard (1...4).contains(field.utf8.count), let g = UInt16(field, radix: 16),
                    field.utf8.allSatisfy({ Self.isHex($0) })
                else { return nil }
                out.append(g)
            }
            return out
        }
        if sawDoubleColon {
            guard let h = groups(parts[0], allowIPv4: false), let t = groups(parts[1], allowIPv4: true)
            else { return nil }
            head = h
            tail = t
            guard head.count + tail.count <= 7 else { return nil }
        } else {
            guard let h = groups(parts[0], allowIPv4: true), h.count == 8 else { return nil }
            head = h
        }
        let all = head + Array(repeating: 0, count: 8 - head.count - tail.count) + tail
        var bytes: [UInt8] = []
        bytes.reserveCapacity(16)
        for g in all {
            bytes.append(UInt8(g >> 8))
            bytes.append(UInt8(g & 0xff))
        }
        self.bytes = bytes
    }

    /// Parses RFC 4291 text; see `init?(_: Substring)`.
    public init?(_ text: String) { self.init(Substring(text)) }

    static func isHex(_ c: UInt8) -> Bool {
        (48...57).contains(c) || (65...70).contains(c) || (97...102).contains(c)
    }

    /// RFC 5952 text: lowercase, no leading zeros, the longest run of two or more zero
    /// groups (the first if tied) written as `::`.
    public var description: String {
        var groups: [UInt16] = []
        for i in 0..<8 { groups.append(UInt16(bytes[2 * i]) << 8 | UInt16(bytes[2 * i + 1])) }
        var bestStart = -1, bestLength = 0, runStart = -1
        for i in 0..<8 {
            if groups[i] == 0 {
                if runStart < 0 { runStart = i }
                if i - runStart + 1 > bestLength {
                    bestLength = i - runStart + 1
                    bestStart = runStart
                }
            } else {
                runStart = -1
            }
        }
        if bestLength < 2 { bestStart = -1 }
        var text = ""
        var i = 0
        while i < 8 {
            if i == bestStart {
                text += "::"
                i += bestLength
                continue
            }
            if !text.isEmpty && !text.hasSuffix(":") { text += ":" }
            text += String(groups[i], radix: 16)
            i += 1
        }
        return text
    }
}

/// An IPv4 or IPv6 address: the one address type of ppctl's modules (the codec's
/// headers, the balancer's endpoints and SNAT pools, the CLI and ppctld).
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

    /// The IPv4 address of an IPv4-mapped IPv6 address (::ffff:a.b.c.d), else nil.
    public var ipv4Mapped: IPv4Address? {
        guard case .v6(let a) = self, a.bytes[0..<10].allSatisfy({ $0 == 0 }), a.bytes[10] == 0xff, a.bytes[11] == 0xff
        else { return nil }
        return IPv4Address(a.bytes[12], a.bytes[13], a.bytes[14], a.bytes[15])
    }
}

private extension Substring {
    func components(separatedBy separator: String) -> [Substring] {
        var result: [Substring] = []
        var rest = self[...]
        while let range = rest.range(of: separator) {
            result.append(rest[rest.startIndex..<range.lowerBound])
            rest = rest[range.upperBound...]
        }
        result.append(rest)
        return result
    }

    func range(of needle: String) -> Range<Index>? {
        let n = Array(needle.utf8)
        var i = startIndex
        while i < endIndex {
            var j = i
            var k = 0
            while k < n.count, j < endIndex, utf8[j] == n[k] {
                j = utf8.index(after: j)
                k += 1
            }
            if k == n.count { return i..<j }
            i = utf8.index(after: i)
        }
        return nil
    }
}
