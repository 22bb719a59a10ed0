import ArgumentParser
import Balancer
import ProxyProtocol

/// The arguments of `service add` as plain values, from its command line or from a
/// line of `service apply`, and the one place they become a checked ServiceSpec.
struct ServiceArguments {
    var vip: String
    var backends: [String] = []
    /// Every `--proxy` value given (more than one is refused).
    var proxy: [String] = []
    /// How many times `--proxyv2` is given (more than once is refused).
    var proxyv2 = 0
    var snat: String?
    var tlvs: [String] = []
    var awsVpceId: String?
    var azureLinkId: UInt32?
    var gcpPscId: UInt64?
    var uniqueId = false
    var crc32c = false
    var serverFirst = false
    var tableSize: Int?

    /// The service these arguments describe, validated (`ServiceSpec.validate()`).
    /// Throws ValidationError (exit 64) naming the bad value.
    func spec() throws -> ServiceSpec {
        let modes = Array(repeating: "--proxyv2", count: proxyv2) + proxy.map { "--proxy \($0)" }
        if modes.count > 1 { throw ValidationError("give the PROXY version once, not \(modes.joined(separator: " and "))") }
        var mode: ProxyMode = proxyv2 > 0 ? .v2 : .none
        if let proxy = proxy.first {
            guard let m = ProxyMode(rawValue: proxy), m != .none else {
                throw ValidationError("--proxy must be v1 or v2, not '\(proxy)'")
            }
            mode = m
        }
        guard !backends.isEmpty else { throw ValidationError("give at least one --backend IP:PORT") }
        return try validated {
            let custom = try ServiceSpec.tlvs(custom: tlvs, awsVpceId: awsVpceId, azureLinkId: azureLinkId, gcpPscId: gcpPscId)
            let spec = ServiceSpec(
                vip: try Endpoint(parsing: vip), backends: try backends.map { try Backend(parsing: $0) },
                proxy: mode, snat: try snat.map { s throws(BalancerError) in try SNATPool.parse(s) } ?? [], tlvs: custom, uniqueID: uniqueId, crc32c: crc32c, serverFirst: serverFirst,
                tableSize: tableSize)
            try spec.validate()
            return spec
        }
    }

    /// Reads the usual forms of a `service add` line quickly: the VIP and
    /// `--backend X`, `--proxyv2`, `--proxy X`, `--snat X`, `--tlv X`, `--aws-vpce-id X`,
    /// `--unique-id`, `--crc32c`, `--server-first`, `--table-size N`, each value a separate word. nil for anything else
    /// (other options, `--opt=value`, repeats, values that look like options), which
    /// the caller hands to ArgumentParser, so both ways read a line the same.
    /// (ArgumentParser costs about 0.4 ms a line: most of a 10,000-line apply.)
    static func quickParse(_ words: [String]) -> ServiceArguments? {
        var a = ServiceArguments(vip: "")
        var vip: String?
        var seen = Set<String>()
        var i = 0
        func value() -> String? {
            guard i + 1 < words.count, !words[i + 1].hasPrefix("-") else { return nil }
            i += 1
            return words[i]
        }
        while i < words.count {
            let word = words[i]
            if !word.hasPrefix("-") {
                guard vip == nil else { return nil }
                vip = word
            } else {
                let repeatable = word == "--backend" || word == "--tlv"
                guard repeatable || seen.insert(word).inserted else { return nil }
                switch word {
                case "--backend": guard let v = value() else { return nil }; a.backends.append(v)
                case "--tlv": guard let v = value() else { return nil }; a.tlvs.append(v)
                case "--proxy": guard let v = value() else { return nil }; a.proxy = [v]
                case "--snat": guard let v = value() else { return nil }; a.snat = v
                case "--aws-vpce-id": guard let v = value() else { return nil }; a.awsVpceId = v
                case "--proxyv2": a.proxyv2 = 1
                case "--unique-id": a.uniqueId = true
                case "--crc32c": a.crc32c = true
                case "--server-first": a.serverFirst = true
                case "--table-size": guard let v = value(), let n = Int(v) else { return nil }; a.tableSize = n
                default: return nil
                }
            }
            i += 1
        }
        guard let vip else { return nil }
        a.vip = vip
        return a
    }
}
