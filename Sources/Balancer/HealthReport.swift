import Datapath
import DatapathABI
import Foundation
import ProxyProtocol

/// What ppctld publishes about the backends it checks, for `ppctl backend list`:
/// a JSON file it rewrites atomically (a new file renamed over the old) at
/// `Instance.runFile("health.json")` whenever something changes, and at least
/// once a second (docs/health.md).
public struct HealthReport: Codable, Equatable, Sendable {
    /// One backend of one of ppctld's services.
    public struct Backend: Codable, Equatable, Sendable {
        /// The service's VIP:PORT and the backend's IP:PORT.
        public var service: String, backend: String
        /// `up`, `down`, `draining` or `drained` (removed from the service).
        public var state: String
        /// The last check's result (`ok`, `refused`, `timeout`, `status 503`...), nil
        /// if the backend has no check or none has ended yet.
        public var lastCheck: String?
        /// How long the last check took, in milliseconds.
        public var latencyMs: Double?
        /// Seconds since the Unix epoch of the last state change (or of ppctld's start).
        public var since: Double
        /// State changes since ppctld started.
        public var transitions: Int

        public init(
            service: String, backend: String, state: String, lastCheck: String?, latencyMs: Double?,
            since: Double, transitions: Int
        ) {
            self.service = service
            self.backend = backend
            self.state = state
            self.lastCheck = lastCheck
            self.latencyMs = latencyMs
            self.since = since
            self.transitions = transitions
        }
    }

    /// ppctld's process id, and when it wrote the report (seconds since the epoch).
    public var pid: Int32
    public var written: Double
    public var backends: [Backend]

    public init(pid: Int32, written: Double, backends: [Backend]) {
        self.pid = pid
        self.written = written
        self.backends = backends
    }

    /// The report of `instance`, or nil if there is none or its ppctld is gone.
    public static func read(_ instance: Instance) -> HealthReport? {
        guard let data = FileManager.default.contents(atPath: instance.runFile("health.json")),
            let report = try? JSONDecoder().decode(HealthReport.self, from: data),
            kill(report.pid, 0) == 0
        else { return nil }
        return report
    }
}

/// A backend to drain, asked for with `ppctl backend drain`: the CLI adds it to
/// the JSON list at `Instance.runFile("drains.json")` (under the instance lock),
/// ppctld reads the list when it changes and drains each backend of it (as
/// `drain: true` in its file) until the backend leaves the file.
public struct DrainRequest: Codable, Equatable, Sendable {
    /// The service's VIP:PORT and the backend's IP:PORT.
    public var service: String, backend: String
    /// Seconds after which connections still open are reset.
    public var timeoutSeconds: Double

    public init(service: String, backend: String, timeoutSeconds: Double) {
        self.service = service
        self.backend = backend
        self.timeoutSeconds = timeoutSeconds
    }

    /// The requests of `instance` (none if the file is missing or unreadable).
    public static func read(_ instance: Instance) -> [DrainRequest] {
        guard let data = FileManager.default.contents(atPath: instance.runFile("drains.json")) else { return [] }
        return (try? JSONDecoder().decode([DrainRequest].self, from: data)) ?? []
    }

    /// Replaces the requests of `instance` (written to a new file renamed over the old).
    public static func write(_ requests: [DrainRequest], _ instance: Instance) throws {
        try JSONEncoder().encode(requests).write(to: URL(fileURLWithPath: instance.runFile("drains.json")), options: .atomic)
    }
}

/// Live connections per backend, counted from the conntrack table.
public enum BackendConnections {
    /// ORIGINAL entries that are not over (no RST, not closed by both sides), by
    /// service id and backend address.
    public static func count(_ entries: [(key: ppctl_ct_key, value: ppctl_ct_entry)]) -> [UInt32: [Endpoint: Int]] {
        var counts: [UInt32: [Endpoint: Int]] = [:]
        for e in entries where e.value.dir == UInt8(PPCTL_DIR_ORIGINAL) && isLive(e.value) {
            counts[e.value.service_id, default: [:]][backend(e.value), default: 0] += 1
        }
        return counts
    }

    /// True unless the connection was reset or both sides have sent FIN.
    public static func isLive(_ e: ppctl_ct_entry) -> Bool {
        let closed = PPCTL_CT_FIN_CLIENT | PPCTL_CT_FIN_BACKEND
        return e.state & PPCTL_CT_RST == 0 && e.state & closed != closed
    }

    /// The backend of an ORIGINAL entry.
    public static func backend(_ e: ppctl_ct_entry) -> Endpoint {
        Endpoint(address: IPAddress(abi: e.nat_daddr, family: e.family), port: UInt16(bigEndian: e.nat_dport))
    }
}
