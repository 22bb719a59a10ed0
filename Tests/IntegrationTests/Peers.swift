import Foundation

/// The real PROXY receivers the tests run (nginx, HAProxy), from the configuration
/// files in Peers/: each a template whose `{{KEY}}`s the test fills in (the test's
/// directory, addresses, what to answer), so that a configuration reads as nginx's
/// or HAProxy's own file, not as a Swift string. (A template's comments name its
/// keys without braces: a value can span lines.)
enum Peers {
    static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Peers").path

    /// Peers/`template` with every `{{KEY}}` replaced by `values[KEY]`, written to
    /// `path`. Throws if the template names a key `values` lacks.
    static func render(_ template: String, to path: String, _ values: [String: String]) throws {
        var text = try String(contentsOfFile: directory + "/" + template, encoding: .utf8)
        for (key, value) in values { text = text.replacingOccurrences(of: "{{\(key)}}", with: value) }
        if let open = text.range(of: "{{"), let close = text.range(of: "}}", range: open.upperBound..<text.endIndex) {
            throw LabError.system("\(template): \(text[open.lowerBound..<close.upperBound]) is not filled in", 0)
        }
        try text.write(toFile: path, atomically: true, encoding: .utf8)
    }

    /// Starts nginx in `ns` on the configuration at `config` (prefix `dir`) and
    /// returns its PID (the lab stops it on close).
    @discardableResult
    static func nginx(_ lab: Lab, in ns: String, config: String, dir: String) throws -> pid_t {
        try lab.spawn(ns, ["/usr/sbin/nginx", "-c", config, "-p", dir])
    }

    /// Starts HAProxy in `ns` on the configuration at `config`, its log in
    /// `dir`/haproxy.log, and returns its PID.
    @discardableResult
    static func haproxy(_ lab: Lab, in ns: String, config: String, dir: String) throws -> pid_t {
        try lab.spawn(ns, ["/bin/sh", "-c", "exec /usr/sbin/haproxy -db -f \(config) >\(dir)/haproxy.log 2>&1"])
    }
}
