import Foundation

/// Scripts/checksum_capture.py in a namespace: the TCP segments an interface receives
/// to or from a port, each one's checksum field checked against what the kernel says
/// the skb holds (PACKET_AUXDATA: a partial checksum's pseudo-header sum, or the full
/// sum). A veth receiver checks neither, so this is the one place a wrong checksum
/// shows. `init` returns once the capture socket is bound.
final class ChecksumCapture {
    struct Report {
        var partial: Int
        var full: Int
        var bad: [String]
        var text: String
    }

    private let run: Background<Lab.Result>

    init(_ lab: Lab, in ns: String, iface: String, port: UInt16, seconds: Int = 3) throws {
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("Scripts/checksum_capture.py").path
        let ready = NSTemporaryDirectory() + "\(ns)-\(iface)-capture-ready"
        try? FileManager.default.removeItem(atPath: ready)
        defer { try? FileManager.default.removeItem(atPath: ready) }
        run = Background { try lab.exec(ns, ["/usr/bin/python3", script, iface, "\(port)", "\(seconds)", ready]) }
        for _ in 0..<250 where !FileManager.default.fileExists(atPath: ready) { usleep(20_000) }
        guard FileManager.default.fileExists(atPath: ready) else { throw LabError.timeout("checksum capture on \(iface) in \(ns)") }
    }

    /// Waits for the capture to end and reads what it found.
    func report() throws -> Report {
        let text = try run.wait(timeout: 30).stdout
        let json = try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any]
        return Report(
            partial: json?["partial"] as? Int ?? 0, full: json?["full"] as? Int ?? 0,
            bad: json?["bad"] as? [String] ?? ["no report"], text: text)
    }
}
