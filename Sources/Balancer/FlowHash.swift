import DatapathABI

/// The datapath's flow hash (`flow_hash` in bpf/include/service_maps.h), computed the
/// same way: MurmurHash3 (x86, 32 bits) of a connection's tuple as the client sent
/// it, seeded with the instance's hash seed. With a service's Maglev table it says
/// which backend a new connection from that tuple gets: `table[hash % M]`.
public enum FlowHash {
    /// The hash of `key` (client address and port, VIP and port, family, TCP):
    /// its nine words of addresses and ports as stored (network order, read as
    /// little-endian 32-bit words), then family | proto << 8.
    public static func hash(_ key: ppctl_ct_key, seed: UInt32) -> UInt32 {
        var words: [UInt32] = []
        withUnsafeBytes(of: key) { raw in
            for i in 0..<9 { words.append(UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self))) }
        }
        words.append(UInt32(key.family) | UInt32(key.proto) << 8)
        var h = seed
        for var k in words {
            k = k &* 0xcc9e_2d51
            k = k << 15 | k >> 17
            k = k &* 0x1b87_3593
            h ^= k
            h = h << 13 | h >> 19
            h = h &* 5 &+ 0xe654_6b64
        }
        h ^= 40
        h ^= h >> 16
        h = h &* 0x85eb_ca6b
        h ^= h >> 13
        h = h &* 0xc2b2_ae35
        h ^= h >> 16
        return h
    }

    /// The tuple key of a client connecting from `client` to `vip` (TCP).
    public static func key(client: Endpoint, vip: Endpoint) -> ppctl_ct_key {
        var k = ppctl_ct_key()
        k.saddr = client.address.abi
        k.daddr = vip.address.abi
        k.sport = client.port.bigEndian
        k.dport = vip.port.bigEndian
        k.family = vip.address.family
        k.proto = UInt8(PPCTL_PROTO_TCP)
        return k
    }
}
