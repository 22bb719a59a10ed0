import Balancer
import Datapath
import DatapathABI
import Dispatch
import Foundation
import Logging

/// The balancer as a service: attaches the datapath as the file says, keeps the
/// services ppctld owns equal to the file's (at start, on SIGHUP and when the
/// file changes), and on SIGTERM/SIGINT exits leaving the datapath running (or
/// removes it, with `detachOnExit`). All of its work runs on the main queue.
final class Daemon {
    let configPath: String
    let instance: Instance
    let detachOnExit: Bool
    let logger: Logger
    /// The service names of the running configuration, for the metrics.
    let names = ServiceNames()
    /// Health checks and drains of the backends; its metrics, for /metrics.
    let healthMetrics = HealthMetrics()
    let health: HealthMonitor
    /// VIP announcements through bird2 (the file's `bgp` section), fed by `health`.
    let bgpMetrics = BGPMetrics()
    let announcer: BGPAnnouncer
    /// The configuration in force: the last one applied.
    private(set) var running: DaemonConfig?
    private var fileStamp: FileStamp?
    private var sources: [DispatchSourceProtocol] = []

    init(configPath: String, instance: Instance, detachOnExit: Bool, logger: Logger) {
        self.configPath = configPath
        self.instance = instance
        self.detachOnExit = detachOnExit
        self.logger = logger
        health = HealthMonitor(instance: instance, logger: logger, metrics: healthMetrics)
        announcer = BGPAnnouncer(source: configPath, logger: logger, metrics: bgpMetrics)
        health.reapply = { [unowned self] in
            if let running { try? apply(running, reason: "drained") }
        }
        health.changed = { [unowned self] in announcer.update(serving: health.serving) }
    }

    // MARK: - Start, reload, stop

    /// Reads the file, attaches (an upgrade in place if the instance is attached:
    /// pinned maps and connections are adopted), sets the default SNAT pool and
    /// reconciles the services. Throws `ConfigError` for a bad file (nothing
    /// changed), or what attaching throws.
    func start() throws {
        fileStamp = FileStamp(configPath)
        let config = try ConfigParser.load(configPath)
        let adopted = instance.isAttached
        let attached = try instance.withLock { () throws -> [Loader.Attached] in
            try Attachment.attach(
                instance, interfaces: config.attach.interfaces,
                cgroup: try config.attach.cgroup.map { try Cgroup(path: $0) },
                maxConnections: config.attach.maxConnections, hashSeed: config.attach.hashSeed)
        }
        logger.info(
            "attached",
            metadata: [
                "event": "attach", "instance": "\(instance.name)", "pins": "\(instance.directory)",
                "interfaces": "\(attached.map(\.name).joined(separator: ","))",
                "cgroup": "\(config.attach.cgroup ?? "-")", "adopted": "\(adopted)"
            ])
        try apply(config)
    }

    /// Reads the file again and applies it; a bad file is refused (logged, one line
    /// per problem) and the running configuration stays.
    func reload(because reason: String) {
        fileStamp = FileStamp(configPath)
        do {
            let config = try ConfigParser.load(configPath)
            if let running, running.attach != config.attach {
                logger.warning(
                    "the attach section changed; it takes effect when ppctld restarts",
                    metadata: ["event": "reload", "file": "\(configPath)"])
            }
            try apply(config, reason: reason)
        } catch let error as ConfigError {
            for issue in error.issues {
                logger.error("\(issue)", metadata: ["event": "refused", "file": "\(configPath)", "reason": "\(reason)"])
            }
        } catch {
            logger.error("\(error)", metadata: ["event": "refused", "file": "\(configPath)", "reason": "\(reason)"])
        }
    }

    /// Writes the default SNAT pool and reconciles the services, under the
    /// instance lock: drained backends left out, those down or draining out of the
    /// Maglev tables (at start, every table is written: what a previous ppctld left out may
    /// be up now). A refusal of the Controller (a VIP the CLI owns, a backend that
    /// is a VIP) is thrown as a `ConfigError` at the key it is about.
    private func apply(_ config: DaemonConfig, reason: String = "start") throws {
        let result: Reconciliation
        health.configure(config)
        let specs = health.effectiveSpecs(config), excluded = health.excluded
        do {
            result = try instance.withLock(needsPins: true) { () throws -> Reconciliation in
                let maps = try Maps(instance)
                let pool = SNATPool.abi(config.snat)
                let key = UInt32(PPCTL_SNAT_POOL_DEFAULT)
                let previous = maps.snatPools.lookup(key)
                let controller = Controller(ServiceTables(maps))
                let result = try controller.reconcile(specs, owner: .ppctld, excluded: excluded)
                if reason == "start" {
                    for spec in specs { try controller.setSelection(spec.vip, excluding: excluded[spec.vip] ?? []) }
                }
                if previous.map({ !Self.same($0, pool) }) ?? true {
                    try maps.snatPools.update(key, pool, mode: .any)
                }
                if let ports = config.attach.snatPorts { try SNATPool.setPorts(ports, in: maps.config) }
                return result
            }
        } catch {
            if let running { health.configure(running) }
            if let error = error as? BalancerError { throw ConfigError.invalid([issue(error, config)]) }
            throw error
        }
        health.applied()
        running = config
        announcer.configure(config.bgp, declared: Set(config.services.map(\.spec.vip.address)), serving: health.serving)
        names.set(Dictionary(config.services.map { ($0.spec.vip, $0.name) }, uniquingKeysWith: { a, _ in a }))
        logger.info(
            "services reconciled",
            metadata: [
                "event": "reconciled", "reason": "\(reason)", "file": "\(configPath)", "services": "\(config.services.count)",
                "added": "\(result.added.count)", "changed": "\(result.changed.count)", "removed": "\(result.removed.count)"
            ])
    }

    private static func same(_ a: ppctl_snat_pool, _ b: ppctl_snat_pool) -> Bool {
        withUnsafeBytes(of: a) { x in withUnsafeBytes(of: b) { y in x.elementsEqual(y) } }
    }

    /// A Controller refusal placed at the key of the file it is about.
    private func issue(_ error: BalancerError, _ config: DaemonConfig) -> ConfigIssue {
        func at(_ line: Int, _ path: String) -> ConfigIssue {
            ConfigIssue(file: configPath, line: line, path: path, message: "\(error)")
        }
        switch error {
        case .ownedByAnother(let vip, _), .vipIsABackend(let vip):
            if let i = config.services.firstIndex(where: { $0.spec.vip.description == vip }) {
                return at(config.services[i].vipLine, "services[\(i)].vip")
            }
        case .backendIsAVIP(let backend):
            for (i, s) in config.services.enumerated() {
                if let j = s.spec.backends.firstIndex(where: { $0.endpoint.description == backend }) {
                    return at(s.backendLines[j], "services[\(i)].backends[\(j)].address")
                }
            }
        default: break
        }
        return at(1, "services")
    }

    /// Stops: withdraws the VIPs from BGP; with `detachOnExit`, removes the datapath,
    /// its pins and services; otherwise leaves everything running for the next start
    /// to adopt.
    func stop(signal: String) {
        health.removeReport()
        announcer.withdrawAll(signal: signal)
        if detachOnExit {
            do {
                // As `ppctl detach`: every interface and cgroup, then the pins.
                let removed = try instance.withLock { try Teardown.detach(instance: instance, interfaces: nil) }
                logger.info(
                    "detached and unpinned",
                    metadata: ["event": "detach", "signal": "\(signal)", "interfaces": "\(removed.joined(separator: ","))"])
            } catch {
                logger.error("\(error)", metadata: ["event": "detach", "signal": "\(signal)"])
            }
        } else {
            logger.info(
                "stopping; the datapath and its connections keep running",
                metadata: ["event": "stop", "signal": "\(signal)", "pins": "\(instance.directory)"])
        }
    }

    // MARK: - Signals and the file

    /// Handles SIGHUP (reload), SIGTERM and SIGINT (`stop`, then `exit`), and polls
    /// the file's modification time, inode and size every second (reload on change).
    /// Call from the main thread, then `dispatchMain()`.
    func watch(onExit: @escaping () -> Void) {
        for sig in [SIGHUP, SIGTERM, SIGINT] {
            signal(sig, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: sig, queue: .main)
            source.setEventHandler { [unowned self] in
                if sig == SIGHUP {
                    reload(because: "SIGHUP")
                } else {
                    stop(signal: sig == SIGTERM ? "SIGTERM" : "SIGINT")
                    onExit()
                    exit(0)
                }
            }
            source.resume()
            sources.append(source)
        }
        let timer = DispatchSource.makeTimerSource(queue: .main)
        timer.schedule(deadline: .now() + 1, repeating: 1)
        timer.setEventHandler { [unowned self] in
            let stamp = FileStamp(configPath)
            if stamp != fileStamp { reload(because: "file changed") }
        }
        timer.resume()
        sources.append(timer)
        health.start()
    }
}

/// What tells that a file changed: its inode, size and modification time (an
/// editor that writes a new file and renames it changes the inode).
struct FileStamp: Equatable {
    var inode: UInt64, size: Int64, seconds: Int, nanoseconds: Int

    /// The file's stamp, or nil if it cannot be read.
    init?(_ path: String) {
        var st = stat()
        guard stat(path, &st) == 0 else { return nil }
        inode = UInt64(st.st_ino)
        size = Int64(st.st_size)
        seconds = st.st_mtim.tv_sec
        nanoseconds = st.st_mtim.tv_nsec
    }
}

/// VIP:PORT → the service's name in the file, shared between the main queue
/// (which sets it) and the metrics server's thread (which reads it).
final class ServiceNames: @unchecked Sendable {
    private let lock = NSLock()
    private var names: [Endpoint: String] = [:]

    func set(_ names: [Endpoint: String]) {
        lock.lock()
        self.names = names
        lock.unlock()
    }

    /// The name of the service at `vip`, or nil for services the file does not declare.
    func name(_ vip: Endpoint) -> String? {
        lock.lock()
        defer { lock.unlock() }
        return names[vip]
    }
}
