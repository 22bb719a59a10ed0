import DatapathABI

/// Maglev consistent hashing (Eisenbud et al., "Maglev: A Fast and Reliable Software
/// Network Load Balancer", NSDI 2016, section 3.4): the lookup table of a service,
/// M slots (M prime) each naming one of its backends. Every backend has a
/// permutation of the slots, drawn from its identity (address and port, not its
/// index) and the seed; backends take turns claiming the next free slot of their
/// permutation until the table is full. Removing or adding one of N backends moves
/// about 1/N of the slots, and two balancers with the same backends, weights, size
/// and seed build the same table.
///
/// Weights: in each round the heaviest backend takes one turn and a backend of
/// weight w takes w/max turns (a credit carried from round to round), so slots are
/// shared in proportion to the weights (after the weighted variants of Katran and
/// Cilium).
public enum Maglev {
    /// A slot that selects nothing (PPCTL_MAGLEV_NONE): every backend is left out.
    public static let none = UInt16(PPCTL_MAGLEV_NONE)
    /// The largest size the datapath accepts (PPCTL_MAGLEV_MAX_SIZE, a prime).
    public static let maxSize = Int(PPCTL_MAGLEV_MAX_SIZE)
    /// Slots per configured backend (rounded up to a power of two) the size rule
    /// gives. Maglev moves a little more than the 1/N of the flows a change of one
    /// backend must move, and less the larger M/N is: with 10 backends, M = 1601
    /// moved up to 12.2% when one was removed, 6421 up to 11.3%, 16001 10.7%
    /// (Tests/BalancerTests/MaglevTests.swift, docs/benchmarks.md).
    public static let slotsPerBackend = 1000

    /// One backend as the table sees it: who it is, how much it gets, whether it
    /// takes part (down or draining backends keep their index but get no slot).
    public struct Member: Hashable, Sendable {
        public var endpoint: Endpoint
        public var weight: Int
        public var selectable: Bool

        public init(endpoint: Endpoint, weight: Int, selectable: Bool = true) {
            self.endpoint = endpoint
            self.weight = weight
            self.selectable = selectable
        }
    }

    // MARK: - Size

    /// The table size of a service with `backends` configured backends (healthy or
    /// not, so that health never changes it): the smallest prime at least
    /// `slotsPerBackend` × the next power of two of the count, and at most
    /// `maxSize`. A size holds for a whole power-of-two step (9 to 16 backends:
    /// 16001), so adding or removing a backend moves ~1/N of the flows; crossing a
    /// step (8 to 9, 16 to 17) changes the size and remaps nearly every flow once
    /// (a service can fix its size instead: `ServiceSpec.tableSize`).
    /// 1: 1009, 2: 2003, 3-4: 4001, 5-8: 8009, 9-16: 16001, 17-32: 32003,
    /// 33-64: 64007, 65-128: 128021, 129-256: 131071.
    public static func tableSize(backends: Int) -> Int {
        var step = 1
        while step < backends { step *= 2 }
        return min(nextPrime(slotsPerBackend * step), maxSize)
    }

    /// True if `size` can be a table's size: a prime in 2...maxSize.
    public static func isValidSize(_ size: Int) -> Bool { size >= 2 && size <= maxSize && isPrime(size) }

    /// The smallest prime ≥ n.
    static func nextPrime(_ n: Int) -> Int {
        var p = max(n, 2)
        while !isPrime(p) { p += 1 }
        return p
    }

    static func isPrime(_ n: Int) -> Bool {
        guard n >= 2 else { return false }
        if n < 4 { return true }
        if n % 2 == 0 { return false }
        var d = 3
        while d * d <= n {
            if n % d == 0 { return false }
            d += 2
        }
        return true
    }

    // MARK: - Table

    /// The table: `size` slots, each the index in `members` of the backend it
    /// selects, or `none` for all of them if no member is selectable (with a
    /// positive weight). `size` must be prime (`isValidSize`); `members` at most
    /// PPCTL_MAX_SERVICE_BACKENDS. The same arguments always give the same table.
    public static func build(_ members: [Member], size: Int, seed: UInt32) -> [UInt16] {
        precondition(isValidSize(size), "a Maglev table's size is a prime")
        let chosen = members.indices.filter { members[$0].selectable && members[$0].weight > 0 }
        var table = [UInt16](repeating: none, count: size)
        guard !chosen.isEmpty else { return table }
        let m = UInt64(size)
        var position = [Int](), skip = [Int](), credit = [Int](repeating: 0, count: chosen.count)
        for i in chosen {
            let (offset, step) = permutation(members[i].endpoint, size: m, seed: seed)
            position.append(offset)
            skip.append(step)
        }
        let heaviest = chosen.map { members[$0].weight }.max()!
        var filled = 0
        while true {
            for (k, i) in chosen.enumerated() {
                credit[k] += members[i].weight
                guard credit[k] >= heaviest else { continue }
                credit[k] -= heaviest
                var slot = position[k]
                while table[slot] != none {
                    slot += skip[k]
                    if slot >= size { slot -= size }
                }
                table[slot] = UInt16(i)
                position[k] = slot + skip[k] >= size ? slot + skip[k] - size : slot + skip[k]
                filled += 1
                if filled == size { return table }
            }
        }
    }

    /// A backend's permutation of the slots: `offset`, `offset + skip`,
    /// `offset + 2 skip`... mod M, with skip in 1..<M (M prime: every slot once).
    static func permutation(_ endpoint: Endpoint, size m: UInt64, seed: UInt32) -> (offset: Int, skip: Int) {
        let id = identity(endpoint)
        let h1 = hash64(id, seed: UInt64(seed))
        let h2 = hash64(id, seed: UInt64(seed) ^ 0x9e37_79b9_7f4a_7c15)
        return (Int(h1 % m), Int(h2 % (m - 1)) + 1)
    }

    /// The bytes that name a backend: family, 16 address bytes, port (big-endian).
    static func identity(_ endpoint: Endpoint) -> [UInt8] {
        var bytes = [endpoint.address.family]
        withUnsafeBytes(of: endpoint.address.abi) { bytes += $0 }
        bytes += [UInt8(endpoint.port >> 8), UInt8(endpoint.port & 0xff)]
        return bytes
    }

    /// FNV-1a over the bytes from a seeded start, then SplitMix64's finaliser (FNV's
    /// low bits alone are weak, and `% M` reads them).
    static func hash64(_ bytes: [UInt8], seed: UInt64) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325 ^ seed
        for b in bytes {
            h ^= UInt64(b)
            h = h &* 0x0000_0100_0000_01b3
        }
        h ^= h >> 30
        h = h &* 0xbf58_476d_1ce4_e5b9
        h ^= h >> 27
        h = h &* 0x94d0_49bb_1331_11eb
        h ^= h >> 31
        return h
    }
}
