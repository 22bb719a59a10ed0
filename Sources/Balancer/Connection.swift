import Datapath
import DatapathABI

/// A tracked connection, from its ORIGINAL (client -> VIP) entry.
public struct Connection: Sendable {
    public var client: Endpoint
    public var vip: Endpoint
    public var backend: Endpoint
    /// The balancer's address and port towards the backend.
    public var snat: Endpoint
    /// State words: syn-sent, established, fin-client, fin-backend, reset, header-sent,
    /// header-acked; `local` for a local client's connection whose header went out at
    /// tc egress (socket path: no address is rewritten, so `vip` is the backend and
    /// `snat` the client).
    public var state: [String]
    /// Bytes inserted at the start of the stream (the sequence delta).
    public var headerLength: Int
    /// The UNIQUE_ID sent to the backend, as 16 hex digits, if the service sends one.
    public var uniqueID: String?
    /// Seconds since the connection was created.
    public var ageSeconds: Double

    /// Reads the ORIGINAL entries of a conntrack map; `nowNanoseconds` is
    /// CLOCK_MONOTONIC_COARSE (the datapath's clock).
    public static func all(in map: BPFMap<ppctl_ct_key, ppctl_ct_entry>, nowNanoseconds: UInt64) -> [Connection] {
        map.entries().compactMap { (key, e) -> Connection? in
            guard e.dir == UInt8(PPCTL_DIR_ORIGINAL) else { return nil }
            func ep(_ a: ppctl_addr, _ p: UInt16) -> Endpoint {
                Endpoint(address: IPAddress(abi: a, family: e.family), port: UInt16(bigEndian: p))
            }
            var words: [String] = []
            let s = e.state
            func has(_ bit: UInt32) -> Bool { s & bit != 0 }
            words.append(has(PPCTL_CT_ESTABLISHED) ? "established" : has(PPCTL_CT_SYN_ACK_SEEN) ? "syn-recv" : "syn-sent")
            if has(PPCTL_CT_FIN_CLIENT) { words.append("fin-client") }
            if has(PPCTL_CT_FIN_BACKEND) { words.append("fin-backend") }
            if has(PPCTL_CT_TIME_WAIT) { words.append("time-wait") }
            if has(PPCTL_CT_RST) { words.append("reset") }
            if e.hdr_len > 0 { words.append(has(PPCTL_CT_HDR_ACKED) ? "header-acked" : has(PPCTL_CT_HDR_SENT) ? "header-sent" : "header-pending") }
            if e.dir_flags & UInt8(PPCTL_CT_L_LOCAL) != 0 { words.append("local") }
            let id = e.unique_id == 0 ? nil : String(e.unique_id, radix: 16).leftPadded(to: 16)
            let age = nowNanoseconds > e.created_ns ? Double(nowNanoseconds - e.created_ns) / 1e9 : 0
            return Connection(client: ep(key.saddr, key.sport), vip: ep(key.daddr, key.dport),
                              backend: ep(e.nat_daddr, e.nat_dport), snat: ep(e.nat_saddr, e.nat_sport),
                              state: words, headerLength: Int(e.hdr_len), uniqueID: id, ageSeconds: age)
        }
    }
}

extension String {
    func leftPadded(to n: Int) -> String { count >= n ? self : String(repeating: "0", count: n - count) + self }
}
