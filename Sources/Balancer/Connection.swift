import Datapath
import DatapathABI
import ProxyProtocol

/// A tracked connection, from its ORIGINAL (client -> VIP) entry.
public struct Connection: Hashable, Sendable {
    /// Where a connection is: the datapath's state bits (PPCTL_CT_*) and the
    /// direction flag that marks a local client's connection.
    public struct State: OptionSet, Hashable, Sendable {
        public let rawValue: UInt32
        public init(rawValue: UInt32) { self.rawValue = rawValue }

        /// The backend answered the SYN.
        public static let synAckSeen = State(rawValue: PPCTL_CT_SYN_ACK_SEEN)
        /// The client completed the handshake.
        public static let established = State(rawValue: PPCTL_CT_ESTABLISHED)
        public static let finClient = State(rawValue: PPCTL_CT_FIN_CLIENT)
        public static let finBackend = State(rawValue: PPCTL_CT_FIN_BACKEND)
        public static let reset = State(rawValue: PPCTL_CT_RST)
        /// The PROXY header went out at least once.
        public static let headerSent = State(rawValue: PPCTL_CT_HDR_SENT)
        /// The backend acknowledged the whole header.
        public static let headerAcked = State(rawValue: PPCTL_CT_HDR_ACKED)
        /// The backend closed first: the tuple is kept for its TIME_WAIT.
        public static let timeWait = State(rawValue: PPCTL_CT_TIME_WAIT)
        /// A local client's connection whose header went out at tc egress (not a
        /// datapath state bit: PPCTL_CT_L_LOCAL of the entry's direction flags).
        public static let local = State(rawValue: 1 << 31)

        /// The state as words, in a fixed order: syn-sent, syn-recv or established;
        /// fin-client, fin-backend, time-wait, reset; header-pending, header-sent or
        /// header-acked when `hasHeader`; local.
        public func words(hasHeader: Bool) -> [String] {
            var words = [contains(.established) ? "established" : contains(.synAckSeen) ? "syn-recv" : "syn-sent"]
            for (bit, word) in [(State.finClient, "fin-client"), (.finBackend, "fin-backend"), (.timeWait, "time-wait"), (.reset, "reset")]
            where contains(bit) {
                words.append(word)
            }
            if hasHeader {
                words.append(contains(.headerAcked) ? "header-acked" : contains(.headerSent) ? "header-sent" : "header-pending")
            }
            if contains(.local) { words.append("local") }
            return words
        }
    }

    public var client: Endpoint
    public var vip: Endpoint
    public var backend: Endpoint
    /// The balancer's address and port towards the backend. For a `local`
    /// connection no address is rewritten: `vip` is the backend and `snat` the client.
    public var snat: Endpoint
    public var flags: State
    /// Bytes inserted at the start of the stream (the sequence delta).
    public var headerLength: Int
    /// The UNIQUE_ID sent to the backend, as 16 hex digits, if the service sends one.
    public var uniqueID: String?
    /// Seconds since the connection was created.
    public var ageSeconds: Double

    /// `flags` as words (`State.words`), as `ppctl conntrack list` shows them.
    public var state: [String] { flags.words(hasHeader: headerLength > 0) }

    /// The connection an ORIGINAL entry describes; nil for a REPLY entry.
    /// `nowNanoseconds` is CLOCK_MONOTONIC_COARSE (the datapath's clock).
    public init?(key: ppctl_ct_key, entry e: ppctl_ct_entry, nowNanoseconds: UInt64) {
        guard e.dir == UInt8(PPCTL_DIR_ORIGINAL) else { return nil }
        func ep(_ a: ppctl_addr, _ p: UInt16) -> Endpoint {
            Endpoint(address: IPAddress(abi: a, family: e.family), port: UInt16(bigEndian: p))
        }
        client = ep(key.saddr, key.sport)
        vip = ep(key.daddr, key.dport)
        backend = ep(e.nat_daddr, e.nat_dport)
        snat = ep(e.nat_saddr, e.nat_sport)
        flags = State(rawValue: e.state & ~State.local.rawValue)
        if e.dir_flags & UInt8(PPCTL_CT_L_LOCAL) != 0 { flags.insert(.local) }
        headerLength = Int(e.hdr_len)
        uniqueID = e.unique_id == 0 ? nil : String(e.unique_id, radix: 16).leftPadded(to: 16)
        ageSeconds = nowNanoseconds > e.created_ns ? Double(nowNanoseconds - e.created_ns) / 1e9 : 0
    }

    /// The connections of a conntrack map (a pinned one, or an in-memory one in
    /// tests), from their ORIGINAL entries.
    public static func all(in map: any KeyValueMap<ppctl_ct_key, ppctl_ct_entry>, nowNanoseconds: UInt64) -> [Connection] {
        map.entries().compactMap { Connection(key: $0.key, entry: $0.value, nowNanoseconds: nowNanoseconds) }
    }
}

extension String {
    func leftPadded(to n: Int) -> String { count >= n ? self : String(repeating: "0", count: n - count) + self }
}
