import DatapathABI

/// The endpoint ring of a service: PPCTL_RING_SIZE slots holding backend indexes in
/// proportion to the weights, interleaved (smooth weighted round robin), so that the
/// datapath picks `ring[hash % size]`.
public enum Ring {
    /// Slots in a ring (PPCTL_RING_SIZE).
    public static let size = Int(PPCTL_RING_SIZE)

    /// The backend index of each of the `size` slots for backends of these weights
    /// (each > 0). Slots are shared out by largest remainder (a backend's count is
    /// its exact share rounded down or up), every backend gets at least one slot
    /// when there are no more backends than slots, and each backend's slots are
    /// spread over the ring. The same weights always give the same ring. No
    /// backends: no slots.
    public static func build(weights: [Int]) -> [Int] {
        let total = weights.reduce(0, +)
        guard !weights.isEmpty, total > 0, weights.allSatisfy({ $0 >= 0 }) else { return [] }
        // Largest remainder apportionment of the slots.
        var shares = weights.map { $0 * size / total }
        var remainders = weights.enumerated().map { ($0.offset, $0.element * size % total) }
        remainders.sort { $0.1 != $1.1 ? $0.1 > $1.1 : $0.0 < $1.0 }
        var left = size - shares.reduce(0, +)
        for (i, _) in remainders where left > 0 { shares[i] += 1; left -= 1 }
        if weights.count <= size {
            for i in shares.indices where shares[i] == 0 {
                if let donor = shares.indices.max(by: { shares[$0] < shares[$1] }) { shares[donor] -= 1; shares[i] = 1 }
            }
        }
        // Smooth weighted round robin over the shares: interleaved, not in runs.
        var current = Array(repeating: 0, count: shares.count)
        var ring: [Int] = []
        ring.reserveCapacity(size)
        for _ in 0..<size {
            var best = -1
            for i in shares.indices where shares[i] > 0 {
                current[i] += shares[i]
                if best < 0 || current[i] > current[best] { best = i }
            }
            current[best] -= size
            ring.append(best)
        }
        return ring
    }
}
