import ArgumentParser
import Balancer
import Datapath
import Foundation

struct BackendCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "backend", abstract: "Add, delete, list or drain the backends of a service.",
        subcommands: [Add.self, Delete.self, List.self, Drain.self])

    struct Add: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Add a backend to a service.")
        @ParentCommand var root: PPCtl
        @Argument(help: ArgumentHelp("The service.", valueName: "VIP:PORT"), transform: Parse.endpoint) var vip: Endpoint
        @Argument(help: ArgumentHelp("The backend.", valueName: "IP:PORT[,weight=N]"), transform: Parse.backend) var backend: Backend

        func run() throws {
            let inst = try root.instance()
            try ppctl.run { try inst.withLock(needsPins: true) { try Controller(opening: inst).addBackend(vip, backend) } }
            print("added backend \(backend.endpoint) to \(vip)")
        }
    }

    struct Delete: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Delete a backend from a service (its established connections keep flowing).")
        @ParentCommand var root: PPCtl
        @Argument(help: ArgumentHelp("The service.", valueName: "VIP:PORT"), transform: Parse.endpoint) var vip: Endpoint
        @Argument(help: ArgumentHelp("The backend.", valueName: "IP:PORT"), transform: Parse.endpoint) var backend: Endpoint

        func run() throws {
            let inst = try root.instance()
            try ppctl.run { try inst.withLock(needsPins: true) { try Controller(opening: inst).deleteBackend(vip, backend) } }
            print("deleted backend \(backend) from \(vip)")
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "List the backends of a service: state, live connections, last health check and its latency.",
            discussion: """
                STATE is what ppctld's health checks and drains say (docs/health.md): up, down, draining, \
                drained; `up` with CHECK `-` for a backend without checks or a service ppctld does not run.
                """)
        @ParentCommand var root: PPCtl
        @Argument(help: ArgumentHelp("The service.", valueName: "VIP:PORT"), transform: Parse.endpoint) var vip: Endpoint
        @OptionGroup var format: OutputOptions

        /// One backend in `-o json`.
        struct JSON: Encodable {
            let backend: String, weight: Int, state: String, connections: Int
            let lastCheck: String?, latencyMs: Double?, sinceSeconds: Double?, transitions: Int

            enum CodingKeys: String, CodingKey {
                case backend, weight, state, connections, lastCheck, latencyMs, sinceSeconds, transitions
            }

            /// Every key always present (null when there is no check).
            func encode(to encoder: Encoder) throws {
                var c = encoder.container(keyedBy: CodingKeys.self)
                try c.encode(backend, forKey: .backend)
                try c.encode(weight, forKey: .weight)
                try c.encode(state, forKey: .state)
                try c.encode(connections, forKey: .connections)
                try c.encode(lastCheck, forKey: .lastCheck)
                try c.encode(latencyMs, forKey: .latencyMs)
                try c.encode(sinceSeconds, forKey: .sinceSeconds)
                try c.encode(transitions, forKey: .transitions)
            }
        }

        func run() throws {
            let inst = try root.instance()
            // Under the lock: a change in progress (a backend delete moves the last
            // backend into the gap) is never seen half done.
            let (view, counts) = try ppctl.run {
                try inst.withLock(needsPins: true) { () throws -> (ServiceView, [Endpoint: Int]) in
                    let maps = try Maps(inst)
                    guard let view = Controller(ServiceTables(maps)).service(vip) else {
                        throw BalancerError.unknownService(vip.description)
                    }
                    return (view, BackendConnections.count(maps.conntrack.entries())[view.id] ?? [:])
                }
            }
            let report = HealthReport.read(inst)?.backends.filter { $0.service == vip.description } ?? []
            let now = Date().timeIntervalSince1970
            var rows = view.spec.backends.map { b -> JSON in
                let h = report.first { $0.backend == b.endpoint.description }
                return JSON(
                    backend: b.endpoint.description, weight: b.weight, state: h?.state ?? "up",
                    connections: counts[b.endpoint] ?? 0, lastCheck: h?.lastCheck, latencyMs: h?.latencyMs,
                    sinceSeconds: h.map { (max(0, now - $0.since) * 10).rounded() / 10 }, transitions: h?.transitions ?? 0)
            }
            // Drained backends are no longer in the service; ppctld still reports them.
            for h in report where h.state == "drained" && !rows.contains(where: { $0.backend == h.backend }) {
                rows.append(
                    JSON(
                        backend: h.backend, weight: 0, state: h.state, connections: 0, lastCheck: h.lastCheck,
                        latencyMs: h.latencyMs, sinceSeconds: (max(0, now - h.since) * 10).rounded() / 10,
                        transitions: h.transitions))
            }
            switch format.output {
            case .json: try printJSON(rows)
            case .table:
                print(
                    table(
                        ["BACKEND", "WEIGHT", "STATE", "CONNS", "CHECK", "LATENCY", "SINCE"],
                        rows.map {
                            [
                                $0.backend, "\($0.weight)", $0.state, "\($0.connections)", $0.lastCheck ?? "-",
                                $0.latencyMs.map { String(format: "%.1fms", $0) } ?? "-",
                                $0.sinceSeconds.map { String(format: "%.0fs", $0) } ?? "-"
                            ]
                        }))
            }
        }
    }

    struct Drain: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Drain a backend of a service ppctld runs: no new connections, existing ones continue.",
            discussion: """
                The backend is removed from the service when its last connection closes, or at the \
                timeout (its connections are then reset). ppctld does the work; this command asks it \
                and waits until it has started. `--cancel` brings the backend back. docs/health.md.
                """)
        @ParentCommand var root: PPCtl
        @Argument(help: ArgumentHelp("The service.", valueName: "VIP:PORT"), transform: Parse.endpoint) var vip: Endpoint
        @Argument(help: ArgumentHelp("The backend.", valueName: "IP:PORT"), transform: Parse.endpoint) var backend: Endpoint
        @Option(help: ArgumentHelp("Reset the connections still open after this long (such as 300s, 5m).", valueName: "DURATION"))
        var timeout = "300s"
        @Flag(help: "Cancel a drain asked for with this command.") var cancel = false

        /// `300s`, `5m`, `500ms`, `1h` (or plain seconds) as seconds.
        static func seconds(_ text: String) -> Double? {
            if let v = Double(text) { return v >= 0 ? v : nil }
            for (unit, factor) in [("ms", 0.001), ("s", 1.0), ("m", 60.0), ("h", 3600.0)] where text.hasSuffix(unit) {
                guard let v = Double(text.dropLast(unit.count)), v >= 0, v.isFinite else { return nil }
                return v * factor
            }
            return nil
        }

        func validate() throws {
            guard Self.seconds(timeout) != nil else { throw ValidationError("--timeout '\(timeout)' is not a duration (such as 300s, 5m)") }
        }

        func run() throws {
            let inst = try root.instance()
            guard HealthReport.read(inst) != nil else {
                printError("ppctld is not running for this balancer: drains are ppctld's (or set `drain: true` in its file)")
                throw ExitCode(1)
            }
            try ppctl.run {
                try inst.withLock(needsPins: true) {
                    guard let view = try Controller(opening: inst).service(vip) else {
                        throw BalancerError.unknownService(vip.description)
                    }
                    guard view.owner == .ppctld else {
                        throw BalancerError.contradiction(
                            "service \(vip) was added with `ppctl service add`: drains are ppctld's (declare the service in its file)")
                    }
                    var requests = DrainRequest.read(inst).filter { !($0.service == vip.description && $0.backend == backend.description) }
                    if !cancel {
                        guard view.spec.backends.contains(where: { $0.endpoint == backend }) else {
                            throw BalancerError.unknownBackend(backend.description, service: vip.description)
                        }
                        requests.append(
                            DrainRequest(service: vip.description, backend: backend.description, timeoutSeconds: Self.seconds(timeout)!))
                    }
                    try DrainRequest.write(requests, inst)
                }
            }
            // ppctld reads the request within a tick; wait until it shows.
            let deadline = Date().addingTimeInterval(5)
            while Date() < deadline {
                let state = HealthReport.read(inst)?.backends.first { $0.service == vip.description && $0.backend == backend.description }?
                    .state
                if cancel ? (state != "draining" && state != "drained") : (state == "draining" || state == "drained") {
                    print(cancel ? "cancelled the drain of \(backend) in \(vip)" : "draining \(backend) of \(vip) (timeout \(timeout))")
                    return
                }
                usleep(50_000)
            }
            printError("ppctld did not take the request within 5 s")
            throw ExitCode(1)
        }
    }
}
