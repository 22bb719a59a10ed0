import Foundation
import Datapath
import XCTest

/// ppctld in the lab's balancer namespace: the file becomes the maps, bad files are
/// refused with file:line and key and change nothing, reloads do not disturb
/// traffic, the CLI's services are left alone, a kill -9 loses nothing, and
/// /metrics agrees with the traffic.
final class DaemonTests: XCTestCase {
    var lab: Lab!
    var directory: String!
    var config: String { directory + "/ppctld.yaml" }
    var logFile: String { directory + "/ppctld.log" }

    override func setUpWithError() throws {
        lab = try Lab()
        directory = NSTemporaryDirectory() + "ppctld-test-\(getpid())-\(lab.balancer)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    }

    override func tearDown() {
        lab?.close()
        lab = nil
        if let directory { try? FileManager.default.removeItem(atPath: directory) }
    }

    // MARK: - Helpers

    static let attach = "attach: {interfaces: [l0, l1], maxConnections: 4096}\n"

    /// Writes the configuration file atomically (a new file renamed over the old:
    /// ppctld never reads half of it).
    func writeConfig(_ yaml: String) throws {
        try yaml.write(toFile: config, atomically: true, encoding: .utf8)
    }

    /// Starts ppctld on the file; returns once it has applied it.
    @discardableResult
    func startDaemon(_ extra: [String] = []) throws -> pid_t {
        let before = count("event=ready")
        let pid = try lab.spawn(lab.balancer, [Lab.ppctldPath, "--config", config] + extra, stderr: logFile)
        try waitFor("ppctld to apply its file and be ready") { count("event=ready") > before }
        return pid
    }

    var log: String { (try? String(contentsOfFile: logFile, encoding: .utf8)) ?? "" }

    func count(_ text: String) -> Int { log.components(separatedBy: "\n").filter { $0.contains(text) }.count }

    func waitFor(_ what: String, timeout: Double = 10, _ condition: () throws -> Bool) throws {
        let deadline = Date().addingTimeInterval(timeout)
        while try !condition() {
            guard Date() < deadline else { throw LabError.timeout(what + "; log:\n" + log) }
            usleep(50_000)
        }
    }

    /// `service list -o json`, by VIP.
    func services() throws -> [String: [String: Any]] {
        let list =
            try JSONSerialization.jsonObject(with: Data(try lab.ppctl(["service", "list", "-o", "json"]).stdout.utf8)) as! [[String: Any]]
        return Dictionary(uniqueKeysWithValues: list.map { ($0["vip"] as! String, $0) })
    }

    func weights(_ service: [String: Any]?) -> [String: Int] {
        let backends = service?["backends"] as? [[String: Any]] ?? []
        return Dictionary(uniqueKeysWithValues: backends.map { ("\($0["address"]!):\($0["port"]!)", $0["weight"] as! Int) })
    }

    // MARK: - Start and stop

    func testStartAppliesTheFileAndMarksItsServicesAndStopLeavesThemRunning() throws {
        try writeConfig(
            "attach: {interfaces: [l0, l1], maxConnections: 4096, snatPorts: 20000-20009, hashSeed: 4242}\n" + """
                snat: [198.18.2.1]
                services:
                  - name: web
                    vip: 198.18.0.10:80
                    proxy: v2
                    tlvs: {uniqueId: true, custom: {"0xE5": tenant-42}}
                    backends:
                      - {address: 198.18.2.2:8080, weight: 2}
                      - {address: 198.18.2.3:8080}
                  - name: mail
                    vip: 198.18.0.11:25
                    proxy: v1
                    serverFirst: true
                    backends: [{address: 198.18.2.2:2525}]
                """)
        let pid = try startDaemon()
        let s = try services()
        XCTAssertEqual(Set(s.keys), ["198.18.0.10:80", "198.18.0.11:25"])
        XCTAssertEqual(s["198.18.0.10:80"]?["owner"] as? String, "ppctld")
        XCTAssertEqual(s["198.18.0.10:80"]?["proxy"] as? String, "v2")
        XCTAssertEqual(s["198.18.0.10:80"]?["uniqueID"] as? Bool, true)
        XCTAssertEqual((s["198.18.0.10:80"]?["tlvs"] as? [[String: Any]])?.first?["hex"] as? String, "74656e616e742d3432")
        XCTAssertEqual(weights(s["198.18.0.10:80"]), ["198.18.2.2:8080": 2, "198.18.2.3:8080": 1])
        XCTAssertEqual(s["198.18.0.11:25"]?["serverFirst"] as? Bool, true)
        XCTAssertEqual(
            try Maps(Instance(netns: lab.balancer, pinRoot: lab.pinRoot)).config.lookup(0)?.hash_seed, 4242,
            "attach.hashSeed")
        XCTAssertEqual(s["198.18.0.10:80"]?["tableSize"] as? Int, 2003)
        XCTAssertTrue(try lab.ppctl(["service", "list"]).stdout.contains("OWNER"))
        XCTAssertEqual(count("event=attach"), 1, log)
        XCTAssertTrue(log.contains("interfaces=l0,l1"), log)

        // The same file again changes nothing (what the maps hold equals the file).
        let reloads = count("event=reconciled")
        Glibc.kill(pid, SIGHUP)
        try waitFor("the reload") { count("event=reconciled") > reloads }
        XCTAssertTrue(log.contains("added=0 changed=0 event=reconciled") && log.contains("reason=SIGHUP removed=0"), log)

        // Traffic flows through a service of the file.
        let server = try lab.listen(in: lab.backend, on: Lab.backendAddress, 2525)
        let client = try lab.connect(from: lab.client, to: "198.18.0.11", 25)
        let accepted = try server.accept()
        let (header, _) = try accepted.readHeader()
        XCTAssertEqual(header.version, .v1, "mail writes v1 headers")
        let snatPort = Int(accepted.peerEndpoint.split(separator: ":").last ?? "") ?? 0
        XCTAssertTrue((20000...20009).contains(snatPort), "SNAT from attach.snatPorts, saw \(accepted.peerEndpoint)")
        _ = client

        // SIGTERM: ppctld goes, the datapath and the services stay.
        lab.kill(pid)
        XCTAssertTrue(log.contains("event=stop"), log)
        XCTAssertEqual(Set(try services().keys), ["198.18.0.10:80", "198.18.0.11:25"])
    }

    func testDetachOnExitRemovesEverything() throws {
        try writeConfig(Self.attach + "services: [{name: web, vip: 198.18.0.10:80, backends: [{address: 198.18.2.2:8080}]}]\n")
        let pid = try startDaemon(["--detach-on-exit"])
        XCTAssertTrue(FileManager.default.fileExists(atPath: lab.instanceDirectory))
        lab.kill(pid)
        XCTAssertTrue(log.contains("event=detach"), log)
        XCTAssertFalse(FileManager.default.fileExists(atPath: lab.instanceDirectory), "pins removed")
    }

    // MARK: - Refusals

    func testBadFilesAreRefusedWithFileLineAndKeyAndChangeNothing() throws {
        let good =
            Self.attach + """
                services:
                  - name: web
                    vip: 198.18.0.10:80
                    proxy: v2
                    backends:
                      - {address: 198.18.2.2:8080, weight: 1}
                """
        try writeConfig(good)
        try startDaemon()
        try lab.ppctl(["service", "add", "198.18.0.20:80", "--backend", "198.18.2.3:8090"])
        let before = try lab.ppctl(["service", "list", "-o", "json"]).stdout
        let f = config
        // Each file, and the lines its refusal must log (all of them, at once).
        let cases: [(String, [String])] = [
            (
                good.replacingOccurrences(of: "weight: 1", with: "weigth: 1"),
                ["\(f):7: services[0].backends[0].weigth: unknown key (expected one of: address, weight, health, drain)"]
            ),
            (
                good.replacingOccurrences(of: "weight: 1", with: "weight: heavy"),
                ["\(f):7: services[0].backends[0].weight: expected a whole number, not 'heavy'"]
            ),
            (
                good.replacingOccurrences(of: "weight: 1", with: "weight: 0"),
                ["\(f):7: services[0].backends[0].weight: 0 is not in 1...10000"]
            ),
            (
                good.replacingOccurrences(of: "198.18.0.10:80", with: "198.18.0.300:80"),
                ["\(f):4: services[0].vip: invalid endpoint '198.18.0.300:80'"]
            ),
            (
                good.replacingOccurrences(of: "proxy: v2", with: "proxy: v3"),
                ["\(f):5: services[0].proxy: 'v3' is not v1, v2 or none"]
            ),
            (
                good.replacingOccurrences(
                    of: "attach: {interfaces: [l0, l1], maxConnections: 4096}",
                    with: "attach: {interfaces: [l0, l1], maxConnections: 8}"),
                ["\(f):1: attach.maxConnections: 8 is not in 16...4000000"]
            ),
            (
                good + "\n  - {name: web2, vip: 198.18.0.10:80, backends: [{address: 198.18.2.3:8080}]}\n",
                ["\(f):8: services[1].vip: 198.18.0.10:80 is given twice (first as services[0].vip, line 4)"]
            ),
            (
                good + "\n  - {name: cli, vip: 198.18.0.20:80, backends: [{address: 198.18.2.3:8080}]}\n",
                ["\(f):8: services[1].vip: service 198.18.0.20:80 was added with `ppctl service add` (owner cli)"]
            ),
            (
                good.replacingOccurrences(of: "proxy: v2", with: "proxy: none\n    tlvs: {crc32c: true}"),
                ["\(f):3: services[0]: TLVs, --unique-id and --crc32c need a PROXY v2 service"]
            ),
            (
                good + "\n  - {name: loop, vip: 198.18.0.11:80, backends: [{address: 198.18.0.10:80}]}\n",
                ["\(f):8: services[1].backends[0].address: backend 198.18.0.10:80 is the VIP of a service"]
            ),
            // Several problems: every one is reported.
            (
                good.replacingOccurrences(of: "weight: 1", with: "weight: -1, port: 1")
                    .replacingOccurrences(of: "name: web", with: "name: web\n    colour: blue"),
                [
                    "\(f):4: services[0].colour: unknown key", "\(f):8: services[0].backends[0].port: unknown key",
                    "\(f):8: services[0].backends[0].weight: -1 is not in 1...10000"
                ]
            ),
            ("services: [\n", ["\(f):2: not valid YAML"]),
            (
                good.replacingOccurrences(of: "proxy: v2", with: "proxy: v2\n    proxy: v1"),
                ["\(f):5: the key 'proxy' is given twice in one mapping (first here)"]
            )
        ]
        for (yaml, expected) in cases {
            let refusals = count("event=refused")
            try writeConfig(yaml)
            try waitFor("a refusal of\n\(yaml)") { count("event=refused") >= refusals + expected.count }
            usleep(100_000)
            let lines = log.components(separatedBy: "\n").filter { $0.contains("event=refused") }.dropFirst(refusals)
            XCTAssertEqual(lines.count, expected.count, "\(yaml)\n\(lines.joined(separator: "\n"))")
            for text in expected {
                XCTAssertTrue(lines.contains { $0.contains(text) }, "expected '\(text)' in:\n\(lines.joined(separator: "\n"))")
            }
            XCTAssertEqual(try lab.ppctl(["service", "list", "-o", "json"]).stdout, before, "maps unchanged by\n\(yaml)")
        }
        // A bad file at start: exit 64, nothing applied.
        lab.close()
        lab = try Lab()
        try writeConfig(cases[0].0)
        let r = try lab.run(["/usr/sbin/ip", "netns", "exec", lab.balancer, Lab.ppctldPath, "--config", config], check: false)
        XCTAssertEqual(r.status, 64)
        XCTAssertTrue(r.stderr.contains(cases[0].1[0]), r.stderr)
    }

    // MARK: - Reload under traffic

    /// A backend that answers every connection's request with `reply` and closes.
    final class Responder {
        /// Shared with the threads, which may outlive the Responder by one accept.
        private final class Flag: @unchecked Sendable { var stop = false }
        private let flag = Flag()
        private var threads: [Thread] = []

        init(_ servers: [TCP], reply: String) {
            for server in servers {
                let thread = Thread { [flag] in
                    while !flag.stop {
                        guard let c = try? server.accept() else { continue }
                        _ = try? c.read()
                        try? c.write(reply)
                    }
                }
                thread.start()
                threads.append(thread)
            }
        }

        func close() { flag.stop = true }

        deinit { flag.stop = true }
    }

    func testReloadOnSIGHUPAddsRemovesAndChangesWithoutDisturbingTraffic() throws {
        let services = """
            services:
              - name: web
                vip: 198.18.0.10:80
                backends:
                  - {address: 198.18.2.2:8080, weight: 1}
                  - {address: 198.18.2.3:8080, weight: 1}
              - name: bulk
                vip: 198.18.0.11:80
                proxy: v2
                backends: [{address: 198.18.2.2:9000}]

            """
        // The default table size: a connection per request fills a small one with TIME_WAITs.
        try writeConfig(
            "attach: {interfaces: [l0, l1]}\n" + services + """
                  - name: old
                    vip: 198.18.0.12:80
                    backends: [{address: 198.18.2.2:8081}]
                """)
        let pid = try startDaemon()
        try lab.ppctl(["service", "add", "198.18.0.20:80", "--backend", "198.18.2.3:8090"])
        let responder = Responder(
            [
                try lab.listen(in: lab.backend, on: Lab.backendAddress, 8080),
                try lab.listen(in: lab.backend, on: Lab.backendAddress2, 8080)
            ], reply: "pong")
        defer { responder.close() }

        // A connection per request, until told to stop; every failure is kept.
        final class Loop {
            var stop = false
            var done = 0
            var failures: [String] = []
        }
        let loop = Loop()
        let lab = self.lab!
        let requests = Background<Void> {
            while !loop.stop {
                do {
                    let c = try lab.connect(from: lab.client, to: Lab.vip, 80, timeout: 5)
                    try c.write("ping")
                    let answer = String(decoding: try c.readAll(), as: UTF8.self)
                    if answer != "pong" { loop.failures.append("answer '\(answer)'") }
                    loop.done += 1
                } catch { loop.failures.append("\(error)") }
                usleep(2_000)
            }
        }
        // 64 MiB through bulk, half of it before the reload and half after.
        let bulkServer = try lab.listen(in: lab.backend, on: Lab.backendAddress, 9000)
        let received = Background<(count: Int, intact: Bool)> {
            try bulkServer.accept().readHeaderAndKeep(seed: 7)
        }
        let bulk = try lab.connect(from: lab.client, to: "198.18.0.11", 80)
        try bulk.sendPattern(seed: 7, total: 32 << 20)

        let reloads = count("event=reconciled")
        try writeConfig(
            "attach: {interfaces: [l0, l1]}\n"
                + services.replacingOccurrences(of: "198.18.2.3:8080, weight: 1", with: "198.18.2.3:8080, weight: 3") + """
                      - name: new
                        vip: 198.18.0.13:80
                        backends: [{address: 198.18.2.3:8082}]
                    """)
        Glibc.kill(pid, SIGHUP)
        try waitFor("the reload") { count("event=reconciled") > reloads }
        usleep(1_500_000)  // and the file watcher's reload of the same file, which changes nothing

        try bulk.sendPattern(seed: 7, total: 32 << 20)
        bulk.shutdownWrite()
        let result = try received.wait(timeout: 120)
        loop.stop = true
        try requests.wait()
        XCTAssertEqual(result.count, 64 << 20)
        XCTAssertTrue(result.intact, "the transfer is byte-exact")
        XCTAssertEqual(loop.failures.count, 0, "no request failed across the reload: \(loop.failures.prefix(5))")
        XCTAssertGreaterThan(loop.done, 10)

        let s = try self.services()
        XCTAssertEqual(Set(s.keys), ["198.18.0.10:80", "198.18.0.11:80", "198.18.0.13:80", "198.18.0.20:80"])
        XCTAssertEqual(weights(s["198.18.0.10:80"]), ["198.18.2.2:8080": 1, "198.18.2.3:8080": 3])
        XCTAssertEqual(s["198.18.0.20:80"]?["owner"] as? String, "cli", "the CLI's service survives the reload")
        XCTAssertEqual(s["198.18.0.13:80"]?["owner"] as? String, "ppctld")
        XCTAssertTrue(
            log.contains("reason=SIGHUP") && log.contains("added=1") && log.contains("changed=1") && log.contains("removed=1"), log)
    }

    // MARK: - kill -9

    func testKill9DuringATransferThenRestartLosesNothing() throws {
        try writeConfig(Self.attach + "services: [{name: bulk, vip: 198.18.0.11:80, proxy: v2, backends: [{address: 198.18.2.2:9000}]}]\n")
        let pid = try startDaemon()
        let server = try lab.listen(in: lab.backend, on: Lab.backendAddress, 9000)
        let received = Background<(count: Int, intact: Bool)> { try server.accept().readHeaderAndKeep(seed: 9) }
        let client = try lab.connect(from: lab.client, to: "198.18.0.11", 80)
        try client.sendPattern(seed: 9, total: 16 << 20)

        Glibc.kill(pid, SIGKILL)
        lab.kill(pid)  // reaps it
        try client.sendPattern(seed: 9, total: 16 << 20)
        let restarted = try startDaemon()
        XCTAssertTrue(log.contains("adopted=true"), log)
        XCTAssertTrue(log.contains("added=0 changed=0") || log.contains("added=0"), log)
        try client.sendPattern(seed: 9, total: 32 << 20)
        client.shutdownWrite()
        let result = try received.wait(timeout: 120)
        XCTAssertEqual(result.count, 64 << 20)
        XCTAssertTrue(result.intact)
        lab.kill(restarted)
    }

    // MARK: - Metrics

    /// Scrapes /metrics from the balancer's namespace and parses it with
    /// prometheus_client's parser (Scripts/scrape_metrics.py): sample name and labels → value.
    func scrape(_ port: Int) throws -> [String: Double] {
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Scripts/scrape_metrics.py").path
        let out = try lab.exec(lab.balancer, ["/usr/bin/python3", script, "http://127.0.0.1:\(port)/metrics"]).stdout
        return try JSONSerialization.jsonObject(with: Data(out.utf8)) as! [String: Double]
    }

    func testMetricsAgreeWithTheTraffic() throws {
        try writeConfig(
            Self.attach + """
                services:
                  - name: web
                    vip: 198.18.0.10:80
                    backends: [{address: 198.18.2.2:8080}, {address: 198.18.2.3:8080}]
                  - name: held
                    vip: 198.18.0.11:80
                    backends: [{address: 198.18.2.2:9000}]
                """)
        try startDaemon(["--metrics", "127.0.0.1:9464"])
        let responder = Responder(
            [
                try lab.listen(in: lab.backend, on: Lab.backendAddress, 8080),
                try lab.listen(in: lab.backend, on: Lab.backendAddress2, 8080)
            ], reply: "pong")
        defer { responder.close() }
        let before = try scrape(9464)
        XCTAssertEqual(before["ppctl_conntrack_capacity"], 8192, "two entries per connection")
        XCTAssertEqual(before["ppctl_backend_up{backend=198.18.2.3:8080,service=web}"], 1)
        XCTAssertEqual(before["ppctl_backend_up{backend=198.18.2.2:9000,service=held}"], 1)
        XCTAssertEqual(before["ppctl_refused_total{reason=no_backend,service=web}"], 0)
        XCTAssertNotNil(before["ppctl_refused_total{reason=snat_exhausted,service=held}"])
        func sum(_ name: String, _ m: [String: Double]) -> Double {
            m.filter { $0.key.hasPrefix(name + "{") }.values.reduce(0, +)
        }

        let n = 7
        for _ in 0..<n {
            let c = try lab.connect(from: lab.client, to: Lab.vip, 80)
            try c.write("ping")
            XCTAssertEqual(String(decoding: try c.readAll(), as: UTF8.self), "pong")
        }
        let server = try lab.listen(in: lab.backend, on: Lab.backendAddress, 9000)
        let held = try (0..<2).map { _ in try lab.connect(from: lab.client, to: "198.18.0.11", 80) }
        let accepted = try held.map { _ in try server.accept() }

        // A closed connection's traffic moves from its entries to the backend's
        // counters when the sweeper takes it (both kinds are summed): let it.
        sleep(3)
        let after = try scrape(9464)
        XCTAssertEqual(after["ppctl_datapath_connections_total"]! - before["ppctl_datapath_connections_total"]!, Double(n + 2))
        let web = ["198.18.2.2:8080", "198.18.2.3:8080"].map { "backend=\($0),service=web" }
        let webConnections = web.map { after["ppctl_connections_total{\($0)}"]! - before["ppctl_connections_total{\($0)}"]! }
        XCTAssertEqual(webConnections.reduce(0, +), Double(n), "the web backends were given \(n) connections: \(webConnections)")
        XCTAssertEqual(
            after["ppctl_service_connections_total{service=web}"]! - before["ppctl_service_connections_total{service=web}"]!, Double(n))
        XCTAssertEqual(after["ppctl_connections_total{backend=198.18.2.2:9000,service=held}"], 2)
        XCTAssertEqual(after["ppctl_active_connections{backend=198.18.2.2:9000,service=held}"], 2)
        // 'ping' (4 bytes) and 'pong' each way: at least the payload, plus headers.
        let webBytes = { (direction: String) in
            ["198.18.2.2:8080", "198.18.2.3:8080"]
                .map { after["ppctl_bytes_total{backend=\($0),direction=\(direction),service=web}"] ?? 0 }.reduce(0, +)
        }
        let toBackend = webBytes("to_backend"), toClient = webBytes("to_client")
        XCTAssertGreaterThan(toBackend, Double(n * 4), "bytes to the web backends")
        XCTAssertGreaterThan(toClient, Double(n * 4), "bytes to web's clients")
        XCTAssertEqual(
            sum("ppctl_bytes_total", after) - sum("ppctl_bytes_total", before),
            (after["ppctl_datapath_bytes_total{direction=to_backend}"]! + after["ppctl_datapath_bytes_total{direction=to_client}"]!)
                - (before["ppctl_datapath_bytes_total{direction=to_backend}"]! + before["ppctl_datapath_bytes_total{direction=to_client}"]!),
            "per-backend bytes add up to the datapath's")
        XCTAssertGreaterThanOrEqual(after["ppctl_conntrack_entries"]!, 4, "the held connections, two entries each")
        XCTAssertNotNil(after["ppctl_headers_injected_total{service=web}"])
        XCTAssertNotNil(after["ppctl_headers_resent_total{service=web}"])
        _ = accepted
    }
}

extension TCP {
    /// Reads the PROXY header, then checks the rest of the stream against the
    /// pattern of `seed`.
    func readHeaderAndKeep(seed: UInt8) throws -> (count: Int, intact: Bool) {
        let (_, rest) = try readHeader()
        return try receivePattern(seed: seed, prefix: rest)
    }
}
