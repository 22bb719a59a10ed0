import Balancer
import Datapath
import DatapathABI
import Dispatch
import Foundation
import Logging
import Prometheus
import ProxyProtocol

/// The health of the backends of ppctld's services (docs/health.md): active
/// checks (`HealthCheck`, run by `Probe`), passive detection (the conntrack
/// table shows a backend refusing or ignoring SYNs), and draining. A backend
/// leaves the selection by its service's Maglev table being rebuilt without it
/// (`Controller.setSelection`); its established connections keep their
/// entries. All of its work runs on the main queue; probes run on a global
/// queue and report back to it.
final class HealthMonitor {
    /// A backend of a service.
    struct Key: Hashable { var vip: Endpoint, backend: Endpoint }

    /// What `ppctl backend list` shows: `up` and `down` from the checks;
    /// `draining` while a drained backend still has connections; `drained` when
    /// it has been removed from its service.
    enum State: String { case up, down, draining, drained }

    /// Everything known about one backend.
    final class Tracked {
        var check: HealthCheck?
        /// The checks' verdict; `state` also says whether it is draining.
        var healthy = true
        var state = State.up
        var successes = 0, failures = 0
        var result: Probe.Result?
        var since = Date()
        var transitions = 0
        /// Uptime (ns) of the next check; a check is running.
        var nextCheck: UInt64 = 0
        var inFlight = false
        /// The check running was asked for by passive detection.
        var passive = false
        /// Uptime (ns) after which a draining backend's connections are reset.
        var drainDeadline: UInt64 = 0
        var connections = 0
        /// created_ns of the newest refused or unanswered SYN seen.
        var lastRefusal: UInt64 = 0
        /// A check passed since ppctld started tracking the backend.
        var passedOnce = false
    }

    let instance: Instance
    let logger: Logger
    let metrics: HealthMetrics
    /// Called when a backend is drained (or a drain cancelled): the services must be
    /// reconciled again with `drained` left out.
    var reapply: () -> Void = {}
    /// Called after a backend changes state (the VIPs `serving` may have changed).
    var changed: () -> Void = {}

    private(set) var tracked: [Key: Tracked] = [:]
    private var services: [DaemonConfig.Service] = []
    private var fileDrains: Set<Key> = []
    private var requestedDrains: [Key: Double] = [:]
    private var requestsStamp: FileStamp?
    private var written: [Endpoint: Set<Endpoint>] = [:]
    private var lastSweep: UInt64 = 0
    private var lastReport: UInt64 = 0
    private var reportChanged = true
    private var maps: Maps?
    private var timer: DispatchSourceTimer?
    private let probes = DispatchQueue(label: "ppctld.probes", attributes: .concurrent)

    /// Time between two ticks (check scheduling, drain requests), in seconds.
    static let tick = 0.05
    /// Default drain timeout, as AWS NLB's deregistration delay (300 s).
    static let defaultDrainTimeout = 300.0

    init(instance: Instance, logger: Logger, metrics: HealthMetrics) {
        self.instance = instance
        self.logger = logger
        self.metrics = metrics
    }

    // MARK: - Configuration

    /// Takes the services of a configuration about to be applied: backends new to
    /// it start up (their first check at once), those gone are forgotten, and
    /// `drain: true` starts draining.
    func configure(_ config: DaemonConfig) {
        services = config.services
        var seen = Set<Key>()
        fileDrains = []
        for s in config.services {
            for (i, b) in s.spec.backends.enumerated() {
                let key = Key(vip: s.spec.vip, backend: b.endpoint)
                seen.insert(key)
                let t = tracked[key] ?? Tracked()
                if tracked[key] == nil { tracked[key] = t }
                let check = i < s.checks.count ? s.checks[i] : nil
                if t.check != check {
                    t.check = check
                    t.nextCheck = 0
                    // Without a check a backend is up.
                    if check == nil && !t.healthy { setHealthy(key, t, true, why: "its check was removed") }
                }
                if s.drain.contains(b.endpoint) { fileDrains.insert(key) }
            }
        }
        for key in tracked.keys where !seen.contains(key) { tracked[key] = nil }
        // The reconcile that follows leaves out what is drained now.
        readDrainRequests(force: true)
        _ = updateDrains()
        reportChanged = true
    }

    /// Backends to keep out of the Maglev tables: down, draining, drained.
    var excluded: [Endpoint: Set<Endpoint>] {
        var out: [Endpoint: Set<Endpoint>] = [:]
        for (key, t) in tracked where t.state != .up { out[key.vip, default: []].insert(key.backend) }
        return out
    }

    /// The specs to reconcile: the file's, without drained backends.
    func effectiveSpecs(_ config: DaemonConfig) -> [ServiceSpec] {
        config.services.map { s in
            var spec = s.spec
            spec.backends.removeAll { tracked[Key(vip: spec.vip, backend: $0.endpoint)]?.state == .drained }
            return spec
        }
    }

    /// The VIP addresses of the services that have at least one backend `up` that
    /// is unchecked or has passed a check since ppctld started (a backend starts `up`,
    /// but a balancer that starts with dead backends must not attract traffic while
    /// its first checks fail): those worth announcing.
    var serving: Set<IPAddress> {
        Set(
            services.filter { s in
                s.spec.backends.contains { b in
                    guard let t = tracked[Key(vip: s.spec.vip, backend: b.endpoint)] else { return false }
                    return t.state == .up && (t.check == nil || t.passedOnce)
                }
            }.map(\.spec.vip.address))
    }

    /// Notes what the tables hold after a reconcile.
    func applied() { written = excluded }

    // MARK: - The loop

    /// Starts ticking on the main queue.
    func start() {
        let timer = DispatchSource.makeTimerSource(queue: .main)
        timer.schedule(deadline: .now(), repeating: Self.tick)
        timer.setEventHandler { [unowned self] in tick() }
        timer.resume()
        self.timer = timer
    }

    private func tick() {
        let now = DispatchTime.now().uptimeNanoseconds
        readDrainRequests(force: false)
        let period = sweepPeriod
        if period > 0 && now >= lastSweep + UInt64(period * 1e9) {
            lastSweep = now
            sweep(now)
        }
        for (key, t) in tracked
        where t.check != nil && !t.inFlight && now >= t.nextCheck
            && (t.state == .up || t.state == .down)
        {
            launch(key, t, passive: false, now: now)
        }
        writeSelection()
        if reportChanged || now >= lastReport + 1_000_000_000 { writeReport(now) }
    }

    /// How often the conntrack table is read: half the shortest check interval,
    /// from 0.1 to 1 s; 1 s if only drains need it; 0 if nothing does.
    private var sweepPeriod: Double {
        let intervals = tracked.values.compactMap { $0.check?.interval }
        if let shortest = intervals.min() { return min(1, max(0.1, shortest / 2)) }
        return tracked.values.contains { $0.state == .draining } ? 1 : 0
    }

    // MARK: - Checks

    private func launch(_ key: Key, _ t: Tracked, passive: Bool, now: UInt64) {
        guard let check = t.check else { return }
        t.inFlight = true
        t.passive = passive
        t.nextCheck = now + UInt64(check.interval * 1e9)
        probes.async {
            let result = Probe.run(check, key.backend)
            DispatchQueue.main.async { [weak self] in self?.finished(key, check, result) }
        }
    }

    private func finished(_ key: Key, _ check: HealthCheck, _ result: Probe.Result) {
        guard let t = tracked[key] else { return }
        t.inFlight = false
        guard t.check == check else { return }
        t.result = result
        reportChanged = true
        metrics.observe(service: name(key.vip), backend: key.backend.description, seconds: result.seconds)
        if result.ok {
            if !t.passedOnce {
                t.passedOnce = true
                changed()
            }
            t.failures = 0
            t.successes += 1
            if !t.healthy && t.successes >= check.rise { setHealthy(key, t, true, why: "\(t.successes) checks passed") }
        } else {
            t.successes = 0
            t.failures += 1
            if t.healthy && (t.passive || t.failures >= check.fall) {
                let why =
                    t.passive
                    ? "refused SYNs seen, then the check failed (\(result.detail))"
                    : "\(t.failures) checks failed (\(result.detail))"
                setHealthy(key, t, false, why: why)
            }
        }
        t.passive = false
        writeSelection()
    }

    private func setHealthy(_ key: Key, _ t: Tracked, _ healthy: Bool, why: String) {
        t.healthy = healthy
        t.successes = 0
        t.failures = 0
        guard t.state == .up || t.state == .down else { return }
        transition(key, t, to: healthy ? .up : .down, why: why)
        if !healthy && t.check?.onDown == .reset { resetConnections(key) }
    }

    private func transition(_ key: Key, _ t: Tracked, to state: State, why: String) {
        guard t.state != state else { return }
        logger.info(
            "backend \(state.rawValue)",
            metadata: [
                "event": "health", "service": "\(name(key.vip))", "backend": "\(key.backend)",
                "from": "\(t.state.rawValue)", "state": "\(state.rawValue)", "why": "\(why)"
            ])
        t.state = state
        t.since = Date()
        t.transitions += 1
        reportChanged = true
        changed()
    }

    // MARK: - The conntrack table: connections, passive detection, drains

    /// Reads the conntrack table once: live connections per backend; SYNs a
    /// backend refused (RST before any SYN-ACK) or left unanswered longer than its
    /// check's timeout start a check at once (a failure takes the backend down);
    /// draining backends without connections are removed, those past their
    /// deadline reset.
    private func sweep(_ now: UInt64) {
        guard let maps = openMaps() else { return }
        let entries = maps.conntrack.entries()
        var vips: [UInt32: Endpoint] = [:]
        for (k, v) in maps.services.entries() {
            vips[v.id] = Endpoint(address: IPAddress(abi: k.vip, family: k.family), port: UInt16(bigEndian: k.port))
        }
        let live = BackendConnections.count(entries)
        for t in tracked.values { t.connections = 0 }
        for (id, byBackend) in live {
            guard let vip = vips[id] else { continue }
            for (backend, n) in byBackend { tracked[Key(vip: vip, backend: backend)]?.connections = n }
        }
        let coarse = Self.coarseNow()
        for e in entries where e.value.dir == UInt8(PPCTL_DIR_ORIGINAL) && e.value.state & PPCTL_CT_SYN_ACK_SEEN == 0 {
            guard let vip = vips[e.value.service_id],
                let t = tracked[Key(vip: vip, backend: BackendConnections.backend(e.value))],
                let check = t.check, t.state == .up, e.value.created_ns > t.lastRefusal
            else { continue }
            let refused = e.value.state & PPCTL_CT_RST != 0
            let unanswered = coarse > e.value.created_ns + UInt64(check.timeout * 1e9)
            guard refused || unanswered else { continue }
            t.lastRefusal = e.value.created_ns
            logger.info(
                "backend refused or ignored a SYN: checking it now",
                metadata: [
                    "event": "passive", "service": "\(name(vip))", "backend": "\(BackendConnections.backend(e.value))",
                    "seen": refused ? "reset" : "syn-sent"
                ])
            // A check already running decides as one started now would.
            if t.inFlight {
                t.passive = true
            } else {
                launch(Key(vip: vip, backend: BackendConnections.backend(e.value)), t, passive: true, now: now)
            }
        }
        var removed = false
        for (key, t) in tracked where t.state == .draining {
            if t.connections == 0 {
                transition(key, t, to: .drained, why: "its last connection closed")
                removed = true
            } else if now >= t.drainDeadline {
                resetConnections(key)
                transition(key, t, to: .drained, why: "drain timeout: \(t.connections) connections reset")
                removed = true
            }
        }
        if removed { reapply() }
    }

    /// Deletes both conntrack entries of every connection of a backend: the next
    /// segment of either side finds none and is dropped (client side) or answered
    /// with a RST by the balancer's stack (backend side).
    private func resetConnections(_ key: Key) {
        guard let maps = openMaps() else { return }
        guard let id = maps.services.lookup(Controller.key(key.vip))?.id else { return }
        var count = 0
        for e in maps.conntrack.entries() where e.value.service_id == id {
            let backend =
                e.value.dir == UInt8(PPCTL_DIR_ORIGINAL)
                ? BackendConnections.backend(e.value)
                : Endpoint(address: IPAddress(abi: e.key.saddr, family: e.key.family), port: UInt16(bigEndian: e.key.sport))
            if backend == key.backend, (try? maps.conntrack.delete(e.key)) != nil { count += 1 }
        }
        logger.info(
            "connections reset",
            metadata: [
                "event": "reset", "service": "\(name(key.vip))", "backend": "\(key.backend)", "entries": "\(count)"
            ])
    }

    /// Drains from the file and from `ppctl backend drain`: backends that enter
    /// start draining, those that leave come back. True if a drained backend came
    /// back (the services must be reconciled to add it again).
    private func updateDrains() -> Bool {
        let now = DispatchTime.now().uptimeNanoseconds
        var reapplyNeeded = false
        for (key, t) in tracked {
            let timeout = requestedDrains[key] ?? (fileDrains.contains(key) ? Self.defaultDrainTimeout : nil)
            if let timeout, t.state == .up || t.state == .down {
                t.drainDeadline = now + UInt64(timeout * 1e9)
                transition(key, t, to: .draining, why: "drain asked for, timeout \(timeout)s")
            } else if timeout == nil, t.state == .draining || t.state == .drained {
                reapplyNeeded = reapplyNeeded || t.state == .drained
                transition(key, t, to: t.healthy ? .up : .down, why: "drain cancelled")
            }
        }
        return reapplyNeeded
    }

    private func readDrainRequests(force: Bool) {
        let stamp = FileStamp(instance.runFile("drains.json"))
        guard force || stamp != requestsStamp else { return }
        requestsStamp = stamp
        var requests: [Key: Double] = [:]
        for r in DrainRequest.read(instance) {
            guard let vip = try? Endpoint(parsing: r.service), let backend = try? Endpoint(parsing: r.backend) else { continue }
            requests[Key(vip: vip, backend: backend)] = r.timeoutSeconds
        }
        requestedDrains = requests
        if !force && updateDrains() { reapply() }
    }

    // MARK: - Publishing

    /// Rewrites the tables of the services whose excluded backends changed.
    private func writeSelection() {
        let now = excluded
        let changed = Set(now.keys).union(written.keys).filter { now[$0] != written[$0] }
        guard !changed.isEmpty else { return }
        do {
            try instance.withLock(needsPins: true) {
                let controller = try Controller(opening: instance)
                for vip in changed where controller.exists(vip) {
                    try controller.setSelection(vip, excluding: now[vip] ?? [])
                }
            }
            written = now
        } catch {
            logger.error("cannot rewrite the Maglev tables: \(error)", metadata: ["event": "health"])
        }
    }

    /// Writes the report for `ppctl backend list` and the metrics' snapshot.
    private func writeReport(_ now: UInt64) {
        lastReport = now
        reportChanged = false
        var backends: [HealthReport.Backend] = []
        for s in services {
            for b in s.spec.backends {
                guard let t = tracked[Key(vip: s.spec.vip, backend: b.endpoint)] else { continue }
                backends.append(
                    HealthReport.Backend(
                        service: s.spec.vip.description, backend: b.endpoint.description, state: t.state.rawValue,
                        lastCheck: t.result?.detail, latencyMs: t.result.map { ($0.seconds * 1e5).rounded() / 100 },
                        since: t.since.timeIntervalSince1970, transitions: t.transitions))
            }
        }
        metrics.set(
            services.flatMap { s in
                s.spec.backends.compactMap { b in
                    tracked[Key(vip: s.spec.vip, backend: b.endpoint)].map {
                        HealthMetrics.Backend(
                            service: s.name, backend: b.endpoint.description, up: $0.state == .up,
                            transitions: $0.transitions)
                    }
                }
            })
        let report = HealthReport(pid: getpid(), written: Date().timeIntervalSince1970, backends: backends)
        do {
            mkdir("/run/ppctl", 0o700)
            try JSONEncoder().encode(report).write(to: URL(fileURLWithPath: instance.runFile("health.json")), options: .atomic)
        } catch {
            logger.error("cannot write the health report: \(error)", metadata: ["event": "health"])
        }
    }

    /// Removes the report (ppctld stops).
    func removeReport() { unlink(instance.runFile("health.json")) }

    // MARK: - Helpers

    private func openMaps() -> Maps? {
        if maps == nil { maps = try? Maps(instance) }
        return maps
    }

    private func name(_ vip: Endpoint) -> String { services.first { $0.spec.vip == vip }?.name ?? vip.description }

    /// CLOCK_MONOTONIC_COARSE in ns: the datapath's clock (created_ns).
    static func coarseNow() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC_COARSE, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }
}

/// The health metrics, shared between the main queue (which sets them) and the
/// metrics server's thread: each backend's state and transitions, and a
/// histogram of check durations kept across scrapes.
final class HealthMetrics: @unchecked Sendable {
    struct Backend { var service: String, backend: String, up: Bool, transitions: Int }

    private let lock = NSLock()
    private var backends: [Backend] = []
    /// Holds the histogram of check durations (its buckets grow with every check).
    let registry = PrometheusCollectorRegistry()
    static let buckets: [Duration] = [
        .milliseconds(1), .milliseconds(5), .milliseconds(10), .milliseconds(50),
        .milliseconds(100), .milliseconds(500), .seconds(1), .seconds(2), .seconds(5)
    ]

    func set(_ backends: [Backend]) {
        lock.lock()
        self.backends = backends
        lock.unlock()
    }

    func snapshot() -> [Backend] {
        lock.lock()
        defer { lock.unlock() }
        return backends
    }

    /// The state of `backend` of `service` (a service's name in the file), nil if not checked.
    func backend(_ service: String, _ backend: String) -> Backend? {
        snapshot().first { $0.service == service && $0.backend == backend }
    }

    func observe(service: String, backend: String, seconds: Double) {
        let d = MetricNameDescriptor(
            namespace: "ppctl", subsystem: "health", metricName: "check_duration", unitName: "seconds",
            helpText: "How long health checks took, by service and backend.")
        registry.makeDurationHistogram(descriptor: d, labels: [("service", service), ("backend", backend)], buckets: Self.buckets)
            .record(.nanoseconds(Int64(seconds * 1e9)))
    }
}
