import Foundation

/// Hand-built Ethernet frames carrying one TCP segment, and an independent check of
/// their checksums: the packet-level tests (PacketTests) build what goes into the
/// program and what must come out with this, byte for byte.

// MARK: - Constants

/// tc verdicts as BPF_PROG_TEST_RUN reports them (linux/pkt_cls.h).
enum TCAction: Int32, CustomStringConvertible {
    case ok = 0
    case shot = 2
    case redirect = 7
    var description: String {
        switch self {
        case .ok: return "TC_ACT_OK"
        case .shot: return "TC_ACT_SHOT"
        case .redirect: return "TC_ACT_REDIRECT"
        }
    }
}

/// TCP flags.
enum TCPFlag {
    static let fin: UInt8 = 0x01, syn: UInt8 = 0x02, rst: UInt8 = 0x04, psh: UInt8 = 0x08, ack: UInt8 = 0x10
}

/// The MAC addresses of the packet lab (PacketLab sets the balancer's interfaces and
/// the neighbours to these).
enum MAC {
    static let client: [UInt8] = [0x02, 0, 0, 0, 0x01, 0x02]  // c0, as the balancer sees it
    static let l0: [UInt8] = [0x02, 0, 0, 0, 0x01, 0x01]  // balancer, client side
    static let l1: [UInt8] = [0x02, 0, 0, 0, 0x02, 0x01]  // balancer, backend side
    static let backend: [UInt8] = [0x02, 0, 0, 0, 0x02, 0x02]  // b0 (a permanent neighbour)
}

// MARK: - Segment

/// One TCP segment in an Ethernet frame, IPv4 (with options) or IPv6 (with a
/// hop-by-hop extension header). `frame` computes every length and checksum.
struct Segment {
    var srcMAC = MAC.client, dstMAC = MAC.l0
    var src: String, dst: String
    var sport: UInt16, dport: UInt16
    var seq: UInt32 = 0, ack: UInt32 = 0
    var flags: UInt8
    var window: UInt16 = 0xFAF0
    /// TCP options, a multiple of 4 bytes.
    var options: [UInt8] = []
    var payload: [UInt8] = []
    /// IPv4 options, a multiple of 4 bytes.
    var ipOptions: [UInt8] = []
    /// IPv6: put an 8-byte hop-by-hop options header (PadN) before TCP.
    var hopByHop = false
    var ttl: UInt8 = 64
    var ipID: UInt16 = 0x4242

    var isIPv6: Bool { src.contains(":") }

    var frame: [UInt8] {
        var tcp: [UInt8] = []
        tcp += be16(sport) + be16(dport) + be32(seq) + be32(ack)
        tcp += [UInt8((20 + options.count) / 4) << 4, flags] + be16(window) + [0, 0, 0, 0]
        tcp += options + payload
        let s = ipBytes(src), d = ipBytes(dst)
        let csum = checksum(pseudoHeader(s, d, tcp.count) + tcp)
        tcp[16] = UInt8(csum >> 8)
        tcp[17] = UInt8(csum & 0xff)

        var out = dstMAC + srcMAC
        if isIPv6 {
            var ext: [UInt8] = []
            if hopByHop { ext = [6, 0, 1, 4, 0, 0, 0, 0] }  // next: TCP; PadN of 4
            out += [0x86, 0xDD, 0x60, 0, 0, 0] + be16(UInt16(ext.count + tcp.count))
            out += [hopByHop ? 0 : 6, ttl] + s + d + ext + tcp
        } else {
            var ip: [UInt8] = [0x45 + UInt8(ipOptions.count / 4), 0]
            ip += be16(UInt16(20 + ipOptions.count + tcp.count)) + be16(ipID) + [0x40, 0, ttl, 6, 0, 0]
            ip += s + d + ipOptions
            let c = checksum(ip)
            ip[10] = UInt8(c >> 8)
            ip[11] = UInt8(c & 0xff)
            out += [0x08, 0x00] + ip + tcp
        }
        return out
    }
}

// MARK: - Bytes

func be16(_ v: UInt16) -> [UInt8] { [UInt8(v >> 8), UInt8(v & 0xff)] }
func be32(_ v: UInt32) -> [UInt8] { [UInt8(v >> 24), UInt8((v >> 16) & 0xff), UInt8((v >> 8) & 0xff), UInt8(v & 0xff)] }

/// 4 or 16 bytes of an address written as text.
func ipBytes(_ text: String) -> [UInt8] {
    if text.contains(":") {
        var a = in6_addr()
        precondition(inet_pton(AF_INET6, text, &a) == 1, text)
        return withUnsafeBytes(of: a) { Array($0) }
    }
    var a = in_addr()
    precondition(inet_pton(AF_INET, text, &a) == 1, text)
    return withUnsafeBytes(of: a) { Array($0) }
}

func hex(_ bytes: [UInt8]) -> String { bytes.map { String(format: "%02x", $0) }.joined() }

func bytes(hex text: String) -> [UInt8] {
    let digits = Array(text.filter { !$0.isWhitespace })
    return stride(from: 0, to: digits.count, by: 2).map { UInt8(String(digits[$0...$0 + 1]), radix: 16)! }
}

// MARK: - Checksums (computed here, never taken from the program)

/// The Internet checksum (RFC 1071) of `data`.
func checksum(_ data: [UInt8]) -> UInt16 {
    var sum: UInt32 = 0
    var i = 0
    while i + 1 < data.count {
        sum += UInt32(data[i]) << 8 | UInt32(data[i + 1])
        i += 2
    }
    if i < data.count { sum += UInt32(data[i]) << 8 }
    while sum > 0xffff { sum = (sum & 0xffff) + (sum >> 16) }
    return ~UInt16(sum)
}

func pseudoHeader(_ s: [UInt8], _ d: [UInt8], _ tcpLength: Int) -> [UInt8] {
    s.count == 4
        ? s + d + [0, 6] + be16(UInt16(tcpLength))
        : s + d + be32(UInt32(tcpLength)) + [0, 0, 0, 6]
}

/// Parses a frame on its own terms: where TCP starts and whether the IPv4 header
/// checksum and the TCP checksum are right (nil: not an IPv4/IPv6 TCP frame).
struct ParsedFrame {
    var tcpOffset: Int
    var ipChecksumOK: Bool
    var tcpChecksumOK: Bool
    var tcp: ArraySlice<UInt8>
    var payload: [UInt8] { Array(tcp.dropFirst((Int(tcp[tcp.startIndex + 12]) >> 4) * 4)) }
    var seq: UInt32 { tcp.withUnsafeBytes { UInt32(bigEndian: $0.loadUnaligned(fromByteOffset: 4, as: UInt32.self)) } }
    var ack: UInt32 { tcp.withUnsafeBytes { UInt32(bigEndian: $0.loadUnaligned(fromByteOffset: 8, as: UInt32.self)) } }

    init?(_ f: [UInt8]) {
        guard f.count >= 34 else { return nil }
        if f[12] == 0x08 && f[13] == 0x00 {
            let ihl = Int(f[14] & 0x0f) * 4, total = Int(f[16]) << 8 | Int(f[17])
            guard f[23] == 6, ihl >= 20, 14 + total <= f.count, total >= ihl + 20 else { return nil }
            ipChecksumOK = checksum(Array(f[14..<14 + ihl])) == 0
            tcpOffset = 14 + ihl
            tcp = f[tcpOffset..<14 + total]
            tcpChecksumOK = checksum(pseudoHeader(Array(f[26..<30]), Array(f[30..<34]), tcp.count) + tcp) == 0
        } else if f[12] == 0x86 && f[13] == 0xDD, f.count >= 54 {
            let end = 54 + (Int(f[18]) << 8 | Int(f[19]))
            var next = f[20], off = 54
            while next == 0 || next == 43 || next == 60 {
                guard off + 2 <= f.count else { return nil }
                next = f[off]
                off += (Int(f[off + 1]) + 1) * 8
            }
            guard next == 6, off + 20 <= end, end <= f.count else { return nil }
            ipChecksumOK = true
            tcpOffset = off
            tcp = f[off..<end]
            tcpChecksumOK = checksum(pseudoHeader(Array(f[22..<38]), Array(f[38..<54]), tcp.count) + tcp) == 0
        } else {
            return nil
        }
    }
}

/// CRC32C (Castagnoli), bit by bit: the reference the datapath's table is checked
/// against.
func crc32c(_ data: [UInt8]) -> UInt32 {
    var crc: UInt32 = 0xFFFF_FFFF
    for b in data {
        crc ^= UInt32(b)
        for _ in 0..<8 { crc = crc & 1 != 0 ? (crc >> 1) ^ 0x82F6_3B78 : crc >> 1 }
    }
    return ~crc
}
