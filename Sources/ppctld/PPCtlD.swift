import ArgumentParser
import Balancer
import Datapath
import Dispatch
import Foundation
import Logging

/// `ppctld`: the balancer as a service (docs/config.md).
@main
struct PPCtlD: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ppctld",
        abstract: "Run the balancer as a service: attach as a YAML file says and keep its services in the maps.",
        discussion: """
            On start, ppctld attaches the datapath (adopting what is pinned: a restart loses no \
            connection), then makes the services it owns exactly the file's, in one transaction. \
            SIGHUP, or a change of the file (checked every second), applies the file again; a bad \
            file is refused, naming file, line and key, and the running configuration stays. \
            Services added with `ppctl service add` are never changed. SIGTERM or SIGINT stop \
            ppctld and leave the datapath running (--detach-on-exit removes it). One log line per \
            event on stderr (key=value).
            """,
        version: "0.1.0")

    @Option(help: ArgumentHelp("The configuration file (YAML, docs/config.md).", valueName: "FILE"))
    var config: String

    @Option(
        help: ArgumentHelp(
            "Run the balancer of network namespace /run/netns/NAME (entered first; its pins are kept per namespace).",
            valueName: "NAME"))
    var netns: String?

    @Option(
        help: ArgumentHelp(
            "Serve GET /metrics (Prometheus text format) on this address, e.g. 127.0.0.1:9090.",
            valueName: "ADDR:PORT"))
    var metrics: String?

    @Flag(help: "On SIGTERM/SIGINT, detach from everything and unpin (services and connections are gone).")
    var detachOnExit = false

    /// `--metrics` as host and port.
    private func metricsAddress() throws -> (host: String, port: Int)? {
        guard let metrics else { return nil }
        guard let colon = metrics.lastIndex(of: ":"), let port = Int(metrics[metrics.index(after: colon)...]),
            (1...65535).contains(port), colon != metrics.startIndex
        else {
            throw ValidationError("--metrics '\(metrics)' is not ADDR:PORT (such as 127.0.0.1:9090 or [::1]:9090)")
        }
        let host = metrics[..<colon].trimmingCharacters(in: CharacterSet(charactersIn: "[]"))
        return (host, port)
    }

    func validate() throws { _ = try metricsAddress() }

    func run() throws {
        LoggingSystem.bootstrap { _ in KeyValueLogHandler() }
        let logger = Logger(label: "ppctld")
        guard geteuid() == 0 else {
            logger.error("ppctld needs root (CAP_BPF, CAP_NET_ADMIN)", metadata: ["event": "refused"])
            throw ExitCode(77)
        }
        // Before any thread exists: setns applies to the calling thread only.
        if let netns {
            do { try Instance.enterNetworkNamespace(netns) } catch {
                logger.error("\(error)", metadata: ["event": "refused"])
                throw ExitCode(1)
            }
        }
        let daemon = Daemon(configPath: config, instance: Instance(netns: netns), detachOnExit: detachOnExit, logger: logger)
        do {
            try daemon.start()
        } catch let error as ConfigError {
            for issue in error.issues { logger.error("\(issue)", metadata: ["event": "refused", "file": "\(config)", "reason": "start"]) }
            throw ExitCode(64)
        } catch {
            logger.error("\(error)", metadata: ["event": "refused", "reason": "start"])
            if case .unsafePinPath = error as? DatapathError { throw ExitCode(77) }
            if case .kernelTooOld = error as? DatapathError { throw ExitCode(69) }
            throw ExitCode(1)
        }
        var server: MetricsServer?
        if let (host, port) = try metricsAddress() {
            do {
                server = try MetricsServer(
                    host: host, port: port,
                    exporter: MetricsExporter(
                        instance: daemon.instance, names: daemon.names, health: daemon.healthMetrics, bgp: daemon.bgpMetrics))
                logger.info("serving metrics", metadata: ["event": "metrics", "address": "\(metrics ?? "")", "path": "/metrics"])
            } catch {
                logger.error("cannot serve metrics on \(metrics ?? ""): \(error)", metadata: ["event": "refused"])
                throw ExitCode(1)
            }
        }
        daemon.watch { server?.shutdown() }
        // From here on SIGTERM stops ppctld cleanly (before, it would kill it outright).
        logger.info("ready", metadata: ["event": "ready", "pid": "\(getpid())"])
        dispatchMain()
    }
}
