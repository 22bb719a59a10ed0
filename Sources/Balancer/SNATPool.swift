import Datapath
import DatapathABI
import ProxyProtocol

/// The source addresses a service's connections leave from towards its backends
/// (`--snat`). The datapath spreads new connections over them: each address gives
/// every backend IP:port its own space of SNAT ports (docs/datapath.md, "SNAT and
/// TIME_WAIT").
public enum SNATPool {
    /// Addresses a pool can hold (PPCTL_MAX_SNAT_ADDRS).
    public static let maxAddresses = Int(PPCTL_MAX_SNAT_ADDRS)

    /// Parses `A`, `A,B`, `A-B` (a range of consecutive addresses; IPv6 ranges may
    /// differ in the last 16 bits only) and lists of these. Throws on text that is
    /// not an address, a range that runs backwards or mixes families, a pool of more
    /// than `maxAddresses`, or an address given twice. Usability and family against
    /// the VIP are `ServiceSpec.validate()`'s to check.
    public static func parse(_ text: String) throws(BalancerError) -> [IPAddress] {
        var pool: [IPAddress] = []
        for item in text.split(separator: ",", omittingEmptySubsequences: false) {
            let ends = item.split(separator: "-", maxSplits: 1, omittingEmptySubsequences: false)
            guard let first = IPAddress(String(ends[0])) else { throw .malformedEndpoint(String(item), "not an IP address") }
            guard ends.count == 2 else {
                pool.append(first)
                continue
            }
            guard let last = IPAddress(String(ends[1])) else { throw .malformedEndpoint(String(item), "'\(ends[1])' is not an IP address") }
            pool += try range(first, last, text: String(item))
            guard pool.count <= maxAddresses else { break }
        }
        guard pool.count <= maxAddresses else {
            throw .malformedEndpoint(text, "a SNAT pool holds at most \(maxAddresses) addresses")
        }
        if let twice = pool.first(where: { a in pool.filter { $0 == a }.count > 1 }) {
            throw .malformedEndpoint(text, "\(twice) is given twice")
        }
        return pool
    }

    private static func range(_ first: IPAddress, _ last: IPAddress, text: String) throws(BalancerError) -> [IPAddress] {
        switch (first, last) {
        case (.v4(let a), .v4(let b)):
            guard a.hostOrder <= b.hostOrder else { throw .malformedEndpoint(text, "the range runs backwards") }
            guard b.hostOrder - a.hostOrder < UInt32(maxAddresses) else {
                throw .malformedEndpoint(text, "a SNAT pool holds at most \(maxAddresses) addresses")
            }
            return (a.hostOrder...b.hostOrder).map { .v4(IPv4Address(hostOrder: $0)) }
        case (.v6(let a), .v6(let b)):
            guard a.bytes[0..<14] == b.bytes[0..<14] else {
                throw .malformedEndpoint(text, "an IPv6 range may differ in its last 16 bits only")
            }
            let lo = Int(a.bytes[14]) << 8 | Int(a.bytes[15]), hi = Int(b.bytes[14]) << 8 | Int(b.bytes[15])
            guard lo <= hi else { throw .malformedEndpoint(text, "the range runs backwards") }
            guard hi - lo < maxAddresses else {
                throw .malformedEndpoint(text, "a SNAT pool holds at most \(maxAddresses) addresses")
            }
            return (lo...hi).map { n in
                var bytes = a.bytes
                bytes[14] = UInt8(n >> 8)
                bytes[15] = UInt8(n & 0xff)
                return .v6(IPv6Address(bytes: bytes)!)
            }
        default:
            throw .malformedEndpoint(text, "the range mixes IPv4 and IPv6")
        }
    }

    /// Checks that every address can be a source address (see
    /// `ServiceSpec.checkUsable`), that they are of one family, and that there are
    /// at most `maxAddresses`.
    public static func validate(_ pool: [IPAddress]) throws(BalancerError) {
        for a in pool {
            try ServiceSpec.checkUsable(a)
            if let first = pool.first, a.family != first.family { throw .mixedFamilies("--snat \(first)", "--snat \(a)") }
        }
        guard pool.count <= maxAddresses else {
            throw .malformedEndpoint(pool.map(\.description).joined(separator: ","), "a SNAT pool holds at most \(maxAddresses) addresses")
        }
    }

    /// Parses the SNAT port range `MIN-MAX` (1024 <= MIN <= MAX <= 65535).
    public static func parsePorts(_ text: String) throws(BalancerError) -> ClosedRange<UInt16> {
        let parts = text.split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count == 2, let lo = UInt16(parts[0]), let hi = UInt16(parts[1]), lo >= 1024, lo <= hi else {
            throw .malformedEndpoint(text, "SNAT ports are MIN-MAX with 1024 <= MIN <= MAX <= 65535")
        }
        return lo...hi
    }

    /// Writes the SNAT port range into the instance's configuration (key 0 of
    /// ppctl_config), keeping the rest. Returns false if it was already so.
    @discardableResult
    public static func setPorts(_ range: ClosedRange<UInt16>, in config: BPFMap<UInt32, ppctl_config>) throws -> Bool {
        guard var c = config.lookup(0) else { return false }
        guard c.snat_port_min != range.lowerBound || c.snat_port_max != range.upperBound else { return false }
        c.snat_port_min = range.lowerBound
        c.snat_port_max = range.upperBound
        try config.update(0, c, mode: .any)
        return true
    }

    /// The pool as the datapath stores it (ppctl_snat_pools).
    public static func abi(_ pool: [IPAddress]) -> ppctl_snat_pool {
        var value = ppctl_snat_pool()
        value.count = UInt32(pool.count)
        withUnsafeMutableBytes(of: &value.addr) { raw in
            for (i, a) in pool.prefix(maxAddresses).enumerated() {
                withUnsafeBytes(of: a.abi) { raw.baseAddress!.advanced(by: i * 16).copyMemory(from: $0.baseAddress!, byteCount: 16) }
            }
        }
        return value
    }

    /// Reads a pool the datapath stores.
    public static func addresses(_ value: ppctl_snat_pool, family: UInt8) -> [IPAddress] {
        withUnsafeBytes(of: value.addr) { raw in
            (0..<min(Int(value.count), maxAddresses)).map { i in
                IPAddress(abi: raw.load(fromByteOffset: i * 16, as: ppctl_addr.self), family: family)
            }
        }
    }
}
