import Balancer
import Datapath
import Foundation
import ProxyProtocol
import Yams

/// Reads ppctld's YAML file into a `DaemonConfig`. Every value becomes what
/// `ppctl service add` and `ppctl attach` would make of it (Endpoint, Backend,
/// SNATPool and ServiceSpec parse and validate it); every problem is collected
/// with its line and key path, and all of them are thrown at once.
struct ConfigParser {
    /// The file's name, as issues show it.
    let file: String
    private var issues: [ConfigIssue] = []

    private init(file: String) { self.file = file }

    /// Reads and checks the file at `path`. Throws `ConfigError`.
    static func load(_ path: String) throws(ConfigError) -> DaemonConfig {
        let text: String
        do { text = try String(contentsOfFile: path, encoding: .utf8) } catch {
            throw .unreadable(path, (error as NSError).localizedDescription)
        }
        return try parse(text, file: path)
    }

    /// Checks `text`, naming `file` in issues. Throws `ConfigError.invalid`.
    static func parse(_ text: String, file: String) throws(ConfigError) -> DaemonConfig {
        var parser = ConfigParser(file: file)
        let root: Node?
        do { root = try Yams.compose(yaml: text) } catch {
            throw .invalid([parser.syntaxIssue(error)])
        }
        let config = parser.config(root)
        if !parser.issues.isEmpty { throw .invalid(parser.issues.sorted { $0.line < $1.line }) }
        return config
    }

    // MARK: - The sections

    private mutating func config(_ root: Node?) -> DaemonConfig {
        var config = DaemonConfig()
        guard let root else {
            add(nil, "", "the file is empty: give at least `attach`")
            return config
        }
        guard let keys = mapping(root, "", allowed: ["attach", "snat", "services", "bgp"]) else { return config }
        if let a = keys["attach"] {
            config.attach = attach(a)
        } else {
            add(root, "attach", "is missing: give `attach: {interfaces: [...]}`")
        }
        if let s = keys["snat"] { config.snat = pool(s, "snat") }
        if let s = keys["services"], let list = sequence(s, "services") {
            config.services = list.enumerated().compactMap { service($1, "services[\($0)]") }
        }
        checkDistinct(config.services)
        if let b = keys["bgp"] { config.bgp = bgp(b) }
        return config
    }

    /// `bgp: {localAS, routerId, peers: [{address, as}], bfd: {enabled, interval,
    /// multiplier}, holdTime, birdSocket, include, birdc}` (docs/config.md, "BGP").
    private mutating func bgp(_ node: Node) -> BGPConfig? {
        let allowed = ["localAS", "routerId", "peers", "bfd", "holdTime", "birdSocket", "include", "birdc"]
        guard let keys = mapping(node, "bgp", allowed: allowed) else { return nil }
        let before = issues.count
        let localAS = required(keys, node, "bgp", "localAS").flatMap { asNumber($0, "bgp.localAS") }
        let routerID = required(keys, node, "bgp", "routerId").flatMap { n in
            string(n, "bgp.routerId").flatMap { text in
                IPv4Address(text)
                    ?? {
                        add(n, "bgp.routerId", "'\(text)' is not an IPv4 address (bird's router id is one)")
                        return nil
                    }()
            }
        }
        var peers: [BGPConfig.Peer] = []
        if let n = required(keys, node, "bgp", "peers"), let list = sequence(n, "bgp.peers") {
            if list.isEmpty { add(n, "bgp.peers", "give at least one peer: {address: IP, as: N}") }
            for (i, item) in list.enumerated() {
                let path = "bgp.peers[\(i)]"
                guard let p = mapping(item, path, allowed: ["address", "as"]) else { continue }
                let address = required(p, item, path, "address").flatMap { a in
                    string(a, path + ".address").flatMap { text in
                        IPAddress(text)
                            ?? {
                                add(a, path + ".address", "'\(text)' is not an IP address")
                                return nil
                            }()
                    }
                }
                let asn = required(p, item, path, "as").flatMap { asNumber($0, path + ".as") }
                guard let address, let asn else { continue }
                if let first = peers.firstIndex(where: { $0.address == address }) {
                    add(item, path + ".address", "\(address) is given twice (first as bgp.peers[\(first)], line \(peers[first].line))")
                    continue
                }
                peers.append(BGPConfig.Peer(address: address, asn: asn, line: item.mark?.line ?? 0))
            }
        }
        var bfd = BGPConfig.BFD()
        if let n = keys["bfd"], let b = mapping(n, "bgp.bfd", allowed: ["enabled", "interval", "multiplier"]) {
            bfd.enabled = b["enabled"].flatMap { bool($0, "bgp.bfd.enabled") } ?? true
            if let i = b["interval"], let text = string(i, "bgp.bfd.interval") {
                let range = BGPConfig.bfdIntervalRange
                if let v = Self.seconds(text), range.contains(v) {
                    bfd.interval = v
                } else {
                    add(i, "bgp.bfd.interval", "'\(text)' is not a duration from 10ms to 10s (such as 100ms)")
                }
            }
            if let m = b["multiplier"], let v = int(m, "bgp.bfd.multiplier") {
                let range = BGPConfig.multiplierRange
                if range.contains(v) {
                    bfd.multiplier = v
                } else {
                    add(m, "bgp.bfd.multiplier", "\(v) is not in \(range.lowerBound)...\(range.upperBound)")
                }
            }
        }
        var holdTime: Int?
        if let n = keys["holdTime"], let v = int(n, "bgp.holdTime") {
            let range = BGPConfig.holdTimeRange
            if range.contains(v) {
                holdTime = v
            } else {
                add(n, "bgp.holdTime", "\(v) is not in \(range.lowerBound)...\(range.upperBound)")
            }
        }
        func path(_ key: String, _ fallback: String) -> String {
            guard let n = keys[key], let text = string(n, "bgp." + key) else { return fallback }
            guard text.hasPrefix("/"), !text.contains("\""), !text.contains(where: \.isNewline) else {
                add(n, "bgp." + key, "'\(text)' is not an absolute path (starting with '/', without quotes)")
                return fallback
            }
            return text
        }
        let socket = path("birdSocket", BGPConfig.defaultSocket)
        let include = path("include", BGPConfig.defaultInclude)
        let birdc = path("birdc", BGPConfig.defaultBirdc)
        guard issues.count == before, let localAS, let routerID else { return nil }
        return BGPConfig(
            localAS: localAS, routerID: routerID, peers: peers, bfd: bfd, holdTime: holdTime,
            birdSocket: socket, include: include, birdc: birdc)
    }

    /// An AS number, 1...4294967295.
    private mutating func asNumber(_ node: Node, _ path: String) -> UInt32? {
        guard let v = int(node, path) else { return nil }
        let range = BGPConfig.asRange
        guard range.contains(v) else {
            add(node, path, "\(v) is not an AS number (\(range.lowerBound)...\(range.upperBound))")
            return nil
        }
        return UInt32(v)
    }

    private mutating func attach(_ node: Node) -> DaemonConfig.Attach {
        var a = DaemonConfig.Attach()
        guard let keys = mapping(node, "attach", allowed: ["interfaces", "cgroup", "maxConnections", "snatPorts", "hashSeed"]) else {
            return a
        }
        if let n = keys["interfaces"], let list = sequence(n, "attach.interfaces") {
            for (i, item) in list.enumerated() {
                guard let name = string(item, "attach.interfaces[\(i)]") else { continue }
                if a.interfaces.contains(name) { add(item, "attach.interfaces[\(i)]", "interface '\(name)' is given twice") }
                a.interfaces.append(name)
            }
        }
        if let n = keys["cgroup"] { a.cgroup = string(n, "attach.cgroup") }
        if let n = keys["maxConnections"], let v = int(n, "attach.maxConnections") {
            let range = Loader.maxConnectionsRange
            if range.contains(v) {
                a.maxConnections = v
            } else {
                add(n, "attach.maxConnections", "\(v) is not in \(range.lowerBound)...\(range.upperBound)")
            }
        }
        if let n = keys["snatPorts"], let text = string(n, "attach.snatPorts") {
            do { a.snatPorts = try SNATPool.parsePorts(text) } catch { add(n, "attach.snatPorts", "\(error)") }
        }
        if let n = keys["hashSeed"], let v = int(n, "attach.hashSeed") {
            if let seed = UInt32(exactly: v) { a.hashSeed = seed } else { add(n, "attach.hashSeed", "\(v) is not in 0...4294967295") }
        }
        if a.interfaces.isEmpty && a.cgroup == nil {
            add(node, "attach", "give `interfaces`, `cgroup`, or both")
        }
        return a
    }

    /// A SNAT pool: a list of `A` or `A-B` (SNATPool's forms), validated together.
    private mutating func pool(_ node: Node, _ path: String) -> [IPAddress] {
        guard let list = sequence(node, path) else { return [] }
        var pool: [IPAddress] = []
        for (i, item) in list.enumerated() {
            guard let text = string(item, "\(path)[\(i)]") else { continue }
            do { pool += try SNATPool.parse(text) } catch { add(item, "\(path)[\(i)]", "\(error)") }
        }
        do { try SNATPool.validate(pool) } catch { add(node, path, "\(error)") }
        return pool
    }

    private mutating func service(_ node: Node, _ path: String) -> DaemonConfig.Service? {
        let allowed = ["name", "vip", "proxy", "snat", "serverFirst", "tableSize", "tlvs", "health", "backends"]
        guard let keys = mapping(node, path, allowed: allowed) else { return nil }
        let before = issues.count
        let name = required(keys, node, path, "name").flatMap { string($0, path + ".name") }
        if let name, !name.allSatisfy({ $0.isLetter || $0.isNumber || "-_.".contains($0) }) || name.isEmpty {
            add(keys["name"], path + ".name", "'\(name)' is not a name (letters, digits, '-', '_', '.')")
        }
        let vipNode = required(keys, node, path, "vip")
        let vip = vipNode.flatMap { n in
            string(n, path + ".vip").flatMap { text in
                attempt(n, path + ".vip") { () throws(BalancerError) in try Endpoint(parsing: text) }
            }
        }
        var proxy = ProxyMode.none
        if let n = keys["proxy"], let text = string(n, path + ".proxy") {
            if let mode = ProxyMode(rawValue: text) { proxy = mode } else { add(n, path + ".proxy", "'\(text)' is not v1, v2 or none") }
        }
        let snat = keys["snat"].map { pool($0, path + ".snat") } ?? []
        let serverFirst = keys["serverFirst"].flatMap { bool($0, path + ".serverFirst") } ?? false
        let tableSize = keys["tableSize"].flatMap { int($0, path + ".tableSize") }
        var tlvs: [ProxyTLV] = [], uniqueID = false, crc32c = false
        if let n = keys["tlvs"] { (tlvs, uniqueID, crc32c) = self.tlvs(n, path + ".tlvs") }
        let serviceCheck = keys["health"].map { health($0, path + ".health", base: HealthCheck(serviceProxy: proxy)) }
        var backends: [Backend] = [], backendLines: [Int] = [], checks: [HealthCheck?] = [], drain = Set<Endpoint>()
        if let n = required(keys, node, path, "backends"), let list = sequence(n, path + ".backends") {
            for (i, item) in list.enumerated() {
                if let (b, check, drained) = backend(item, "\(path).backends[\(i)]", check: serviceCheck, proxy: proxy) {
                    backends.append(b)
                    backendLines.append(item.mark?.line ?? 0)
                    checks.append(check)
                    if drained { drain.insert(b.endpoint) }
                }
            }
        }
        guard issues.count == before, let name, let vip, let vipNode else { return nil }
        let spec = ServiceSpec(
            vip: vip, backends: backends, proxy: proxy, snat: snat, tlvs: tlvs,
            uniqueID: uniqueID, crc32c: crc32c, serverFirst: serverFirst, tableSize: tableSize)
        // What is left to check (families, duplicates, a backend that is the VIP...) is ServiceSpec's.
        do { try spec.validate() } catch {
            add(node, path, "\(error)")
            return nil
        }
        return DaemonConfig.Service(
            name: name, spec: spec, line: node.mark?.line ?? 0,
            vipLine: vipNode.mark?.line ?? 0, backendLines: backendLines,
            checks: checks, drain: drain)
    }

    /// A backend, its check (the service's, with the keys of its own `health` put
    /// over it) and its `drain`.
    private mutating func backend(
        _ node: Node, _ path: String, check: HealthCheck?,
        proxy: ProxyMode
    ) -> (Backend, HealthCheck?, Bool)? {
        guard let keys = mapping(node, path, allowed: ["address", "weight", "health", "drain"]) else { return nil }
        let check = keys["health"].map { health($0, path + ".health", base: check ?? HealthCheck(serviceProxy: proxy)) } ?? check
        let drain = keys["drain"].flatMap { bool($0, path + ".drain") } ?? false
        guard let a = required(keys, node, path, "address"), let text = string(a, path + ".address"),
            let endpoint = attempt(a, path + ".address", { () throws(BalancerError) in try Endpoint(parsing: text) })
        else { return nil }
        var weight = 1
        if let n = keys["weight"], let w = int(n, path + ".weight") {
            let range = Backend.weightRange
            guard range.contains(w) else {
                add(n, path + ".weight", "\(w) is not in \(range.lowerBound)...\(range.upperBound)")
                return nil
            }
            weight = w
        }
        return (Backend(endpoint: endpoint, weight: weight), check, drain)
    }

    /// `health: {type, path, status, proxy, interval, timeout, rise, fall, onDown}`,
    /// each key given replacing `base`'s.
    private mutating func health(_ node: Node, _ path: String, base: HealthCheck) -> HealthCheck {
        let allowed = ["type", "path", "status", "proxy", "interval", "timeout", "rise", "fall", "onDown"]
        var h = base
        guard let keys = mapping(node, path, allowed: allowed) else { return h }
        func choice<T: RawRepresentable>(_ key: String, _ what: String) -> T? where T.RawValue == String {
            guard let n = keys[key], let text = string(n, "\(path).\(key)") else { return nil }
            if let v = T(rawValue: text) { return v }
            add(n, "\(path).\(key)", "'\(text)' is not \(what)")
            return nil
        }
        if let v: HealthCheck.Kind = choice("type", "tcp or http") { h.kind = v }
        if let v: ProxyMode = choice("proxy", "v1, v2 or none") { h.proxy = v }
        if let v: HealthCheck.OnDown = choice("onDown", "keep or reset") { h.onDown = v }
        if let n = keys["path"], let v = string(n, path + ".path") {
            if v.hasPrefix("/") && !v.contains(where: { $0.isWhitespace || $0.isNewline }) {
                h.path = v
            } else {
                add(n, path + ".path", "'\(v)' is not an HTTP path (it starts with '/' and has no blanks)")
            }
        }
        if let n = keys["status"], let v = int(n, path + ".status") {
            if (100...599).contains(v) { h.status = v } else { add(n, path + ".status", "\(v) is not in 100...599") }
        }
        for key in ["rise", "fall"] {
            guard let n = keys[key], let v = int(n, "\(path).\(key)") else { continue }
            guard (1...100).contains(v) else {
                add(n, "\(path).\(key)", "\(v) is not in 1...100")
                continue
            }
            if key == "rise" { h.rise = v } else { h.fall = v }
        }
        for key in ["interval", "timeout"] {
            guard let n = keys[key], let text = string(n, "\(path).\(key)") else { continue }
            guard let v = Self.seconds(text), v >= 0.05, v <= 3600 else {
                add(n, "\(path).\(key)", "'\(text)' is not a duration from 50ms to 1h (such as 2s, 200ms, 1m)")
                continue
            }
            if key == "interval" { h.interval = v } else { h.timeout = v }
        }
        return h
    }

    /// `200ms`, `2s`, `1.5s`, `1m`, `1h` as seconds; nil if it is none of these.
    static func seconds(_ text: String) -> Double? {
        for (unit, factor) in [("ms", 0.001), ("s", 1.0), ("m", 60.0), ("h", 3600.0)] where text.hasSuffix(unit) {
            if let v = Double(text.dropLast(unit.count)), v.isFinite, v >= 0 { return v * factor }
            return nil
        }
        return nil
    }

    /// `tlvs: {uniqueId, crc32c, custom: {"0xE5": text}, awsVpceId, azureLinkId, gcpPscId}`.
    private mutating func tlvs(_ node: Node, _ path: String) -> ([ProxyTLV], Bool, Bool) {
        let allowed = ["uniqueId", "crc32c", "custom", "awsVpceId", "azureLinkId", "gcpPscId"]
        guard let keys = mapping(node, path, allowed: allowed) else { return ([], false, false) }
        var custom: [String] = []
        if let n = keys["custom"], let m = n.mapping {
            for (k, v) in m {
                guard let type = string(k, path + ".custom"), let value = string(v, "\(path).custom.\(k.string ?? "")") else { continue }
                custom.append("\(type)=\(value)")
            }
        } else if let n = keys["custom"] {
            add(n, path + ".custom", "expected a mapping of TYPE: VALUE, such as {\"0xE5\": tenant-42}")
        }
        let aws = keys["awsVpceId"].flatMap { string($0, path + ".awsVpceId") }
        let azure = keys["azureLinkId"].flatMap { n in
            int(n, path + ".azureLinkId").flatMap { v in
                UInt32(exactly: v)
                    ?? {
                        add(n, path + ".azureLinkId", "\(v) is not in 0...\(UInt32.max)")
                        return nil
                    }()
            }
        }
        let gcp = keys["gcpPscId"].flatMap { n in
            string(n, path + ".gcpPscId").flatMap { v in
                UInt64(v)
                    ?? {
                        add(n, path + ".gcpPscId", "'\(v)' is not a number in 0...\(UInt64.max)")
                        return nil
                    }()
            }
        }
        let tlvs =
            attempt(node, path) { () throws(BalancerError) in
                try ServiceSpec.tlvs(custom: custom, awsVpceId: aws, azureLinkId: azure, gcpPscId: gcp)
            } ?? []
        let uniqueID = keys["uniqueId"].flatMap { bool($0, path + ".uniqueId") } ?? false
        let crc32c = keys["crc32c"].flatMap { bool($0, path + ".crc32c") } ?? false
        return (tlvs, uniqueID, crc32c)
    }

    /// No name and no VIP:PORT twice.
    private mutating func checkDistinct(_ services: [DaemonConfig.Service]) {
        var names: [String: Int] = [:], vips: [Endpoint: Int] = [:]
        for (i, s) in services.enumerated() {
            if let first = names[s.name] {
                add(line: s.line, "services[\(i)].name", "'\(s.name)' is given twice (first as services[\(first)].name)")
            } else {
                names[s.name] = i
            }
            if let first = vips[s.spec.vip] {
                add(
                    line: s.vipLine, "services[\(i)].vip",
                    "\(s.spec.vip) is given twice (first as services[\(first)].vip, line \(services[first].vipLine))")
            } else {
                vips[s.spec.vip] = i
            }
        }
    }

    // MARK: - Typed values, each problem recorded with its path

    private mutating func add(_ node: Node?, _ path: String, _ message: String) {
        add(line: node?.mark?.line ?? 1, path, message)
    }

    private mutating func add(line: Int, _ path: String, _ message: String) {
        issues.append(ConfigIssue(file: file, line: line, path: path, message: message))
    }

    /// The value of a balancer parser, or nil with its message recorded.
    private mutating func attempt<T>(_ node: Node, _ path: String, _ body: () throws(BalancerError) -> T) -> T? {
        do { return try body() } catch {
            add(node, path, "\(error)")
            return nil
        }
    }

    private mutating func required(_ keys: [String: Node], _ node: Node, _ path: String, _ key: String) -> Node? {
        if let value = keys[key] { return value }
        add(node, path + "." + key, "is missing")
        return nil
    }

    /// The keys of a mapping; unknown and repeated keys are recorded.
    private mutating func mapping(_ node: Node, _ path: String, allowed: [String]) -> [String: Node]? {
        guard let m = node.mapping else {
            add(node, path, "expected a mapping (key: value), not \(kind(node))")
            return nil
        }
        var keys: [String: Node] = [:]
        for (k, v) in m {
            let name = k.string ?? "?"
            let at = path.isEmpty ? name : path + "." + name
            guard allowed.contains(name) else {
                add(k, at, "unknown key (expected one of: \(allowed.joined(separator: ", ")))")
                continue
            }
            guard keys[name] == nil else {
                add(k, at, "is given twice")
                continue
            }
            keys[name] = v
        }
        return keys
    }

    private mutating func sequence(_ node: Node, _ path: String) -> [Node]? {
        guard let s = node.sequence else {
            add(node, path, "expected a list, not \(kind(node))")
            return nil
        }
        return Array(s)
    }

    private mutating func string(_ node: Node, _ path: String) -> String? {
        guard case .scalar(let s) = node, node.null == nil || s.style != .plain else {
            add(node, path, "expected a text value, not \(kind(node))")
            return nil
        }
        return s.string
    }

    private mutating func int(_ node: Node, _ path: String) -> Int? {
        guard case .scalar(let s) = node, s.style == .plain, let v = Int(s.string) else {
            add(node, path, "expected a whole number, not \(kind(node))")
            return nil
        }
        return v
    }

    private mutating func bool(_ node: Node, _ path: String) -> Bool? {
        guard case .scalar(let s) = node, s.style == .plain, s.string == "true" || s.string == "false" else {
            add(node, path, "expected true or false, not \(kind(node))")
            return nil
        }
        return s.string == "true"
    }

    /// What a node is, for messages: `'text'`, a list, a mapping.
    private func kind(_ node: Node) -> String {
        switch node {
        case .scalar(let s): return s.string.isEmpty ? "an empty value" : "'\(s.string)'"
        case .mapping: return "a mapping"
        case .sequence: return "a list"
        case .alias: return "an alias"
        }
    }

    /// A YAML syntax error as an issue at its line.
    private func syntaxIssue(_ error: Error) -> ConfigIssue {
        var line = 1, problem = "\(error)"
        if let e = error as? YamlError {
            switch e {
            case .scanner(_, let p, let mark, _), .parser(_, let p, let mark, _), .composer(_, let p, let mark, _):
                line = mark.line
                problem = p
            case .duplicatedKeysInMapping(let keys, let context):
                let names = keys.sorted().map { "'\($0)'" }.joined(separator: ", ")
                return ConfigIssue(
                    file: file, line: context.mark.line, path: "",
                    message: "the key \(names) is given twice in one mapping (first here)")
            default: break
            }
        }
        return ConfigIssue(file: file, line: line, path: "", message: "not valid YAML: \(problem)")
    }
}
