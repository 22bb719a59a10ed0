import Balancer
import Foundation
import ProxyProtocol

/// The text ppctld writes to `bgp.include` for bird2 (docs/config.md, "BGP"): the
/// router id, the VIPs to announce as `protocol static` routes (`blackhole`: bird
/// never installs them in a kernel table, it only exports them), one BFD protocol
/// if BFD is on, and one BGP protocol per peer that exports exactly the VIPs of the
/// peer's family and imports nothing. Protocol names start with `ppctl_` and are
/// stable across rewrites (a peer's name is its address), so `birdc configure`
/// adds and removes routes without restarting sessions whose peer did not change.
enum BirdConfig {
    /// The static protocol holding the VIPs of one family.
    static func staticProtocol(ipv6: Bool) -> String { ipv6 ? "ppctl_vips6" : "ppctl_vips4" }

    /// The BGP protocol of a peer: `ppctl_peer_` and its address with `.` and `:` as `_`.
    static func peerProtocol(_ peer: BGPConfig.Peer) -> String {
        "ppctl_peer_" + peer.address.description.map { $0.isLetter || $0.isNumber ? String($0) : "_" }.joined()
    }

    /// The include file announcing `vips` (each /32 or /128) to the peers of `bgp`;
    /// `source` (the configuration file) is named in the first line. The same input
    /// gives the same text: VIPs are sorted, IPv4 first.
    static func render(_ bgp: BGPConfig, announcing vips: Set<IPAddress>, source: String) -> String {
        let sorted = vips.sorted { sortKey($0).lexicographicallyPrecedes(sortKey($1)) }
        var out = """
            # Written by ppctld from \(source); ppctld rewrites it at every change
            # (docs/config.md, "BGP"). bird.conf includes it: include "\(bgp.include)";
            router id \(bgp.routerID);

            """
        for ipv6 in [false, true] {
            out += "\nprotocol static \(staticProtocol(ipv6: ipv6)) {\n    \(ipv6 ? "ipv6" : "ipv4");\n"
            for vip in sorted where isV6(vip) == ipv6 {
                out += "    route \(vip)/\(ipv6 ? 128 : 32) blackhole;\n"
            }
            out += "}\n"
        }
        if bgp.bfd.enabled {
            out += "\nprotocol bfd ppctl_bfd {\n}\n"
        }
        for peer in bgp.peers {
            let ipv6 = isV6(peer.address)
            out += "\nprotocol bgp \(peerProtocol(peer)) {\n"
            out += "    local as \(bgp.localAS);\n"
            out += "    neighbor \(peer.address) as \(peer.asn);\n"
            if let hold = bgp.holdTime { out += "    hold time \(hold);\n" }
            if bgp.bfd.enabled {
                let ms = Int((bgp.bfd.interval * 1000).rounded())
                out += "    bfd { min rx interval \(ms) ms; min tx interval \(ms) ms; multiplier \(bgp.bfd.multiplier); };\n"
            }
            out += "    \(ipv6 ? "ipv6" : "ipv4") {\n"
            out += "        import none;\n"
            out += "        export where proto = \"\(staticProtocol(ipv6: ipv6))\";\n"
            out += "    };\n}\n"
        }
        return out
    }

    private static func isV6(_ a: IPAddress) -> Bool { if case .v6 = a { return true } else { return false } }

    private static func sortKey(_ a: IPAddress) -> [UInt8] {
        [a.family] + withUnsafeBytes(of: a.abi) { Array($0) }
    }
}
