import ArgumentParser
import Balancer
import ProxyProtocol

/// The arguments of `service add`, parsed: from its command line (ArgumentParser,
/// with the transforms of Arguments.swift) or from a line of `service apply`
/// (`quickParse`, with the same transforms), and the one place they become a
/// checked ServiceSpec.
struct ServiceArguments {
    var vip: Endpoint
    var backends: [Backend] = []
    /// Every `--proxy` value given (more than one is refused).
    var proxy: [ProxyMode] = []
    /// How many times `--proxyv2` is given (more than once is refused).
    var proxyv2 = 0
    var snat: [IPAddress]?
    var tlvs: [ProxyTLV] = []
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
        let modes = Array(repeating: "--proxyv2", count: proxyv2) + proxy.map { "--proxy \($0.rawValue)" }
        if modes.count > 1 { throw ValidationError("give the PROXY version once, not \(modes.joined(separator: " and "))") }
        let mode = proxy.first ?? (proxyv2 > 0 ? .v2 : .none)
        guard !backends.isEmpty else { throw ValidationError("give at least one --backend IP:PORT") }
        return try validated {
            let custom = try ServiceSpec.tlvs(parsed: tlvs, awsVpceId: awsVpceId, azureLinkId: azureLinkId, gcpPscId: gcpPscId)
            let spec = ServiceSpec(
                vip: vip, backends: backends, proxy: mode, snat: snat ?? [], tlvs: custom,
                uniqueID: uniqueId, crc32c: crc32c, serverFirst: serverFirst, tableSize: tableSize)
            try spec.validate()
            return spec
        }
    }

    /// Reads the usual forms of a `service add` line quickly: the VIP and
    /// `--backend X`, `--proxyv2`, `--proxy X`, `--snat X`, `--tlv X`, `--aws-vpce-id X`,
    /// `--unique-id`, `--crc32c`, `--server-first`, `--table-size N`, each value a
    /// separate word and read by the same transform as on the command line. nil for
    /// anything else (other options, `--opt=value`, repeats, values that look like
    /// options or do not parse), which the caller hands to ArgumentParser: both ways
    /// read a line the same, and an error is always ArgumentParser's. (ArgumentParser
    /// costs about 0.4 ms a line: most of a 10,000-line apply.)
    static func quickParse(_ words: [String]) -> ServiceArguments? {
        var a = ServiceArguments(vip: Endpoint(address: .v4(.init(0, 0, 0, 0)), port: 0))
        var vip: Endpoint?
        var seen = Set<String>()
        var i = 0
        func value<T>(_ transform: (String) throws -> T) -> T? {
            guard i + 1 < words.count, !words[i + 1].hasPrefix("-") else { return nil }
            i += 1
            return try? transform(words[i])
        }
        while i < words.count {
            let word = words[i]
            if !word.hasPrefix("-") {
                guard vip == nil, let v = try? Parse.endpoint(word) else { return nil }
                vip = v
            } else {
                let repeatable = word == "--backend" || word == "--tlv"
                guard repeatable || seen.insert(word).inserted else { return nil }
                switch word {
                case "--backend":
                    guard let v = value(Parse.backend) else { return nil }
                    a.backends.append(v)
                case "--tlv":
                    guard let v = value(Parse.tlv) else { return nil }
                    a.tlvs.append(v)
                case "--proxy":
                    guard let v = value({ ProxyMode(argument: $0) }), let m = v else { return nil }
                    a.proxy = [m]
                case "--snat":
                    guard let v = value(Parse.snatPool) else { return nil }
                    a.snat = v
                case "--aws-vpce-id":
                    guard let v = value({ $0 }) else { return nil }
                    a.awsVpceId = v
                case "--proxyv2": a.proxyv2 = 1
                case "--unique-id": a.uniqueId = true
                case "--crc32c": a.crc32c = true
                case "--server-first": a.serverFirst = true
                case "--table-size":
                    guard let v = value({ Int($0) }), let n = v else { return nil }
                    a.tableSize = n
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
