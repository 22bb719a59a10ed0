import Foundation
import XCTest

/// ppctld's health checks and drains (docs/health.md), with real receivers: nginx
/// (`listen ... proxy_protocol`) and HAProxy (`accept-proxy`) read the probes' v2
/// LOCAL and v1 UNKNOWN headers; a failed backend leaves the selection within
/// fall × interval + 1 s and returns after rise checks; with every backend down a
/// SYN gets a RST at once; a drained backend keeps its transfer and gets no new
/// connection; a backend refusing SYNs is noticed before its checks say so.
final class HealthTests: XCTestCase {
    var lab: Lab!
    var dir: String!
    var config: String { dir + "/ppctld.yaml" }
    var logFile: String { dir + "/ppctld.log" }

    override func setUpWithError() throws {
        lab = try Lab()
        dir = NSTemporaryDirectory() + "ppctl-health-\(getpid())-\(lab.balancer)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    }

    override func tearDown() {
        lab?.close()
        lab = nil
        if let dir { try? FileManager.default.removeItem(atPath: dir) }
    }

    // MARK: - Helpers

    /// Starts ppctld on `yaml` (after the attach section); returns once it applied it.
    @discardableResult
    func startDaemon(_ yaml: String, _ extra: [String] = []) throws -> pid_t {
        try ("attach: {interfaces: [l0, l1], maxConnections: 65536}\n" + yaml).write(toFile: config, atomically: true, encoding: .utf8)
        let pid = try lab.spawn(lab.balancer, [Lab.ppctldPath, "--config", config] + extra, stderr: logFile)
        try waitFor("ppctld to apply its file") { log.contains("event=reconciled") }
        return pid
    }

    var log: String { (try? String(contentsOfFile: logFile, encoding: .utf8)) ?? "" }

    func waitFor(_ what: String, timeout: Double = 10, _ condition: () throws -> Bool) throws {
        let deadline = Date().addingTimeInterval(timeout)
        while try !condition() {
            guard Date() < deadline else { throw LabError.timeout(what + "; log:\n" + log) }
            usleep(20_000)
        }
    }

    /// `ppctl backend list VIP -o json`, by backend.
    func backends(_ vip: String) throws -> [String: [String: Any]] {
        let out = try lab.ppctl(["backend", "list", vip, "-o", "json"]).stdout
        let list = try JSONSerialization.jsonObject(with: Data(out.utf8)) as! [[String: Any]]
        let byBackend = Dictionary(grouping: list) { $0["backend"] as! String }
        for (backend, rows) in byBackend where rows.count > 1 { XCTFail("\(backend) is listed \(rows.count) times: \(out)") }
        return byBackend.compactMapValues(\.first)
    }

    func state(_ vip: String, _ backend: String) throws -> String? { try backends(vip)[backend]?["state"] as? String }

    /// An nginx of its own (one process: killing its PID stops it) on address:8080,
    /// HTTP with `proxy_protocol`: /healthz answers 200, / answers its name.
    func startNginx(_ name: String, on address: String) throws -> pid_t {
        try Peers.render(
            "nginx-http-echo.conf", to: "\(dir!)/\(name).conf",
            [
                "DIR": dir, "NAME": name, "LISTEN": "listen \(address):8080 proxy_protocol;", "BODY": "\(name) $proxy_protocol_addr"
            ])
        let pid = try Peers.nginx(lab, in: lab.backend, config: "\(dir!)/\(name).conf", dir: dir)
        try waitFor("nginx \(name) listening") {
            try lab.exec(lab.backend, ["ss", "-Hltn", "src \(address):8080"]).stdout.contains("LISTEN")
        }
        return pid
    }

    func text(_ path: String) -> String { (try? String(contentsOfFile: path, encoding: .utf8)) ?? "" }

    /// One HTTP/1.0 request on a new connection: the body, or nil if it failed.
    func request(_ vip: String, _ port: UInt16) -> String? {
        guard let c = try? lab.connect(from: lab.client, to: vip, port, timeout: 2),
            (try? c.write("GET / HTTP/1.0\r\n\r\n")) != nil,
            let answer = try? c.readAll(limit: 4096)
        else { return nil }
        let text = String(decoding: answer, as: UTF8.self)
        guard text.hasPrefix("HTTP/1.1 200") else { return nil }
        return text.components(separatedBy: "\r\n\r\n").last
    }

    // MARK: - The file

    func testBadHealthKeysAreRefusedWithFileLineAndKey() throws {
        try
            ("""
        attach: {interfaces: [l0, l1]}
        services:
          - name: web
            vip: 198.18.0.10:80
            health: {type: udp, path: healthz, interval: 2 s, rise: 0, onDown: drop}
            backends: [{address: 198.18.2.2:8080, drain: yes, health: {status: 700}}]
        """).write(toFile: config, atomically: true, encoding: .utf8)
        let r = try lab.exec(lab.balancer, [Lab.ppctldPath, "--config", config], check: false)
        XCTAssertEqual(r.status, 64, r.stderr)
        for expected in [
            "\(config):5: services[0].health.type: 'udp' is not tcp or http",
            "\(config):5: services[0].health.path: 'healthz' is not an HTTP path",
            "\(config):5: services[0].health.interval: '2 s' is not a duration",
            "\(config):5: services[0].health.rise: 0 is not in 1...100",
            "\(config):5: services[0].health.onDown: 'drop' is not keep or reset",
            "\(config):6: services[0].backends[0].drain: expected true or false",
            "\(config):6: services[0].backends[0].health.status: 700 is not in 100...599"
        ] {
            XCTAssertTrue(r.stderr.contains(expected), "expected '\(expected)' in:\n\(r.stderr)")
        }
    }

    // MARK: - A backend fails and returns

    func testFailedBackendLeavesWithinFallTimesIntervalAndReturnsAfterRise() throws {
        _ = try startNginx("n1", on: Lab.backendAddress)
        var n2 = try startNginx("n2", on: Lab.backendAddress2)
        try startDaemon(
            """
            services:
              - name: web
                vip: 198.18.0.10:80
                proxy: v2
                health: {type: http, path: /healthz, status: 200, interval: 200ms, timeout: 200ms, rise: 2, fall: 3}
                backends: [{address: 198.18.2.2:8080}, {address: 198.18.2.3:8080}]
            """, ["--metrics", "127.0.0.1:9464"])
        let vip = "198.18.0.10:80", b2 = "198.18.2.3:8080"
        try waitFor("both backends checked") { try backends(vip).values.allSatisfy { $0["lastCheck"] as? String == "ok" } }

        // Connection-per-request load, each result with its time.
        final class Results: @unchecked Sendable {
            let lock = NSLock()
            var items: [(time: Date, body: String?)] = []
            var stop = false
            func add(_ body: String?) {
                lock.lock()
                items.append((Date(), body))
                lock.unlock()
            }
            var all: [(time: Date, body: String?)] {
                lock.lock()
                defer { lock.unlock() }
                return items
            }
        }
        let results = Results()
        let load = Background { [self] in
            while !results.stop {
                results.add(request(Lab.vip, 80))
                usleep(5_000)
            }
        }
        usleep(1_000_000)
        XCTAssertTrue(results.all.allSatisfy { $0.body != nil }, "no failure while both are up")

        // Stop n2: within fall × interval + 1 s = 1.6 s no request fails any more.
        let stopped = Date()
        lab.kill(n2)
        try waitFor("n2 down") { try state(vip, b2) == "down" }
        let detected = Date().timeIntervalSince(stopped)
        usleep(2_500_000)
        let bound = stopped.addingTimeInterval(3 * 0.2 + 1)
        let window = results.all.filter { $0.time >= stopped && $0.time < bound }
        let failedInWindow = window.filter { $0.body == nil }.count
        let failedAfter = results.all.filter { $0.time >= bound && $0.body == nil }.count
        print(
            "n2 stopped: marked down after \(String(format: "%.2f", detected)) s; \(failedInWindow) of \(window.count) requests failed in the first 1.6 s, \(failedAfter) after"
        )
        XCTAssertLessThan(detected, 3 * 0.2 + 1)
        XCTAssertEqual(failedAfter, 0, "no request fails once fall × interval + 1 s have passed")

        // Start n2 again: it takes traffic after rise checks.
        let restarted = Date()
        n2 = try startNginx("n2", on: Lab.backendAddress2)
        try waitFor("n2 up") { try state(vip, b2) == "up" }
        let upAfter = Date().timeIntervalSince(restarted)
        try waitFor("a request to reach n2") { results.all.contains { $0.time > restarted && $0.body?.hasPrefix("n2") == true } }
        print("n2 restarted: up again after \(String(format: "%.2f", upAfter)) s (rise 2 × 200 ms)")
        results.stop = true
        try load.wait()
        let b = try backends(vip)[b2]!
        XCTAssertEqual(b["transitions"] as? Int, 2)
        XCTAssertEqual(b["lastCheck"] as? String, "ok")
        XCTAssertNotNil(b["latencyMs"] as? Double)
        XCTAssertTrue(try lab.ppctl(["backend", "list", vip]).stdout.contains("STATE"))

        // Metrics: the real state, the transitions, the check durations.
        let metrics = try lab.exec(lab.balancer, ["curl", "-s", "http://127.0.0.1:9464/metrics"]).stdout
        XCTAssertTrue(metrics.contains(#"ppctl_backend_up{service="web",backend="198.18.2.3:8080"} 1"#), metrics)
        XCTAssertTrue(metrics.contains(#"ppctl_backend_transitions_total{service="web",backend="198.18.2.3:8080"} 2"#), metrics)
        XCTAssertTrue(metrics.contains("ppctl_health_check_duration_seconds_bucket"), metrics)

        // The probes' v2 LOCAL headers were read by nginx as headers.
        for name in ["n1", "n2"] {
            XCTAssertFalse(text("\(dir!)/\(name)-error.log").contains("broken header"), text("\(dir!)/\(name)-error.log"))
            XCTAssertTrue(text("\(dir!)/\(name)-access.log").contains("GET /healthz"), "the probes reached \(name)")
        }
        XCTAssertTrue(log.contains("event=health") && log.contains("state=down"), log)
    }

    // MARK: - What receivers make of the probes' headers

    func testNginxAndHAProxyAcceptV2LocalAndV1UnknownProbes() throws {
        _ = try startNginx("n1", on: Lab.backendAddress)
        // The control: n2 gets probes without a header, which it must call broken.
        _ = try startNginx("n2", on: Lab.backendAddress2)
        try Peers.render(
            "haproxy-echo.cfg", to: dir + "/haproxy.cfg",
            [
                "BIND": "bind 198.18.2.3:8081 accept-proxy", "FORMAT": "haproxy %[src]"
            ])
        try Peers.haproxy(lab, in: lab.backend, config: dir + "/haproxy.cfg", dir: dir)
        try lab.waitForListener(lab.backend, 8081)
        let check = "health: {type: http, path: /healthz, interval: 200ms, timeout: 500ms}"
        try startDaemon(
            """
            services:
              - {name: nginx-v1, vip: 198.18.0.10:80, proxy: v1, \(check), backends: [{address: 198.18.2.2:8080}]}
              - {name: nginx-v2, vip: 198.18.0.10:81, proxy: v2, \(check), backends: [{address: 198.18.2.2:8080}]}
              - {name: haproxy-v1, vip: 198.18.0.11:80, proxy: v1, \(check), backends: [{address: 198.18.2.3:8081}]}
              - {name: haproxy-v2, vip: 198.18.0.11:81, proxy: v2, \(check), backends: [{address: 198.18.2.3:8081}]}
              - name: nginx-override
                vip: 198.18.0.12:80
                proxy: v2
                health: {type: tcp, proxy: none}
                backends: [{address: 198.18.2.2:8080, health: {type: http, path: /healthz, proxy: v1, interval: 200ms}}]
              - {name: control, vip: 198.18.0.13:80, proxy: v2, health: {type: http, path: /healthz, proxy: none, interval: 200ms},
                 backends: [{address: 198.18.2.3:8080}]}
            """)
        let vips = ["198.18.0.10:80", "198.18.0.10:81", "198.18.0.11:80", "198.18.0.11:81", "198.18.0.12:80"]
        // Ten checks each (200 ms apart), every one passed: no transition, last ok.
        usleep(2_000_000)
        for vip in vips {
            for (backend, b) in try backends(vip) {
                XCTAssertEqual(b["state"] as? String, "up", "\(vip) \(backend)")
                XCTAssertEqual(b["lastCheck"] as? String, "ok", "\(vip) \(backend)")
                XCTAssertEqual(b["transitions"] as? Int, 0, "\(vip) \(backend)")
            }
        }
        let errors = text(dir + "/n1-error.log")
        XCTAssertFalse(errors.contains("broken header"), errors)
        XCTAssertEqual(try state("198.18.0.13:80", "198.18.2.3:8080"), "down", "a probe without its header fails")
        XCTAssertTrue(text(dir + "/n2-error.log").contains("broken header"), "nginx logs what it cannot read")
        XCTAssertGreaterThanOrEqual(text(dir + "/n1-access.log").components(separatedBy: "GET /healthz").count - 1, 20)
        // And the services themselves carry traffic to both receivers.
        XCTAssertEqual(request("198.18.0.10", 80)?.hasPrefix("n1 198.18.1.2"), true)
        XCTAssertEqual(request("198.18.0.11", 81)?.hasPrefix("haproxy 198.18.1.2"), true)
    }

    // MARK: - Every backend down

    func testEveryBackendDownRefusesSYNsWithARSTAtOnce() throws {
        try startDaemon(
            """
            services:
              - name: dead
                vip: 198.18.0.10:80
                health: {type: tcp, interval: 200ms, timeout: 200ms, fall: 2}
                backends: [{address: 198.18.2.2:8080}, {address: 198.18.2.3:8080}]
            """)
        let started = Date()
        try waitFor("both backends down") { try backends("198.18.0.10:80").values.allSatisfy { $0["state"] as? String == "down" } }
        print(
            "every backend down: both marked down \(String(format: "%.2f", Date().timeIntervalSince(started))) s after ppctld applied its file (fall 2 × 200 ms, active checks only)"
        )
        let before = try lab.counters()
        var times: [Double] = []
        for _ in 0..<10 {
            let start = DispatchTime.now().uptimeNanoseconds
            XCTAssertThrowsError(try lab.connect(from: lab.client, to: Lab.vip, 80, timeout: 3)) {
                XCTAssertTrue("\($0)".contains("refused"), "\($0)")
            }
            times.append(Double(DispatchTime.now().uptimeNanoseconds - start) / 1e6)
        }
        let after = try lab.counters()
        print("every backend down: connect() refused after \(times.map { String(format: "%.3f", $0) }.joined(separator: ", ")) ms")
        XCTAssertLessThan(times.sorted()[times.count / 2], 1.0, "the median refusal takes less than a millisecond")
        XCTAssertLessThan(times.max()!, 100, "no SYN was retransmitted (that takes 1 s)")
        XCTAssertEqual(after["refused_no_backend"]! - before["refused_no_backend"]!, 10, "one SYN per connect: no retransmit")
        XCTAssertEqual(after["resets_sent"]! - before["resets_sent"]!, 10)
    }

    // MARK: - Draining

    func testDrainedBackendKeepsItsTransferGetsNoNewConnectionAndIsRemovedAfterIt() throws {
        let listeners = [
            Lab.backendAddress: try lab.listen(in: lab.backend, on: Lab.backendAddress, 8080),
            Lab.backendAddress2: try lab.listen(in: lab.backend, on: Lab.backendAddress2, 8080)
        ]
        try startDaemon(
            """
            services:
              - name: files
                vip: 198.18.0.10:80
                backends: [{address: 198.18.2.2:8080}, {address: 198.18.2.3:8080}]
            """)
        var client: TCP? = try lab.connect(from: lab.client, to: Lab.vip, 80)
        let (address, listener) = listeners.first { $0.value.isReadable(within: 0.5) }!
        let other = listeners.first { $0.key != address }!.value
        let drained = "\(address):8080"
        let server = try listener.accept()
        let total = 64 << 20
        let sender = Background {
            try server.sendPattern(seed: 7, total: total)
            server.shutdownWrite()
        }

        let drainStart = Date()
        XCTAssertTrue(try lab.ppctl(["backend", "drain", "198.18.0.10:80", drained, "--timeout", "60s"]).stdout.contains("draining"))
        XCTAssertEqual(try state("198.18.0.10:80", drained), "draining")
        // New connections go to the other backend only.
        var others: [TCP] = []
        for _ in 0..<20 {
            let c = try lab.connect(from: lab.client, to: Lab.vip, 80)
            XCTAssertTrue(other.isReadable(within: 2))
            others.append(try other.accept())
            _ = c
        }
        XCTAssertFalse(listener.isReadable(within: 0.3), "no new connection reached the drained backend")
        XCTAssertEqual(try backends("198.18.0.10:80")[drained]?["connections"] as? Int, 1)

        // The transfer completes byte-exact; then the backend leaves the service.
        let (count, intact) = try client!.receivePattern(seed: 7)
        try sender.wait()
        let ended = Date()
        XCTAssertEqual(count, total)
        XCTAssertTrue(intact)
        client = nil
        try waitFor("the drained backend removed") { try state("198.18.0.10:80", drained) == "drained" }
        let removedAfter = Date().timeIntervalSince(ended)
        print(
            "drain: transfer of 64 MiB ended \(String(format: "%.2f", ended.timeIntervalSince(drainStart))) s after the drain began; backend removed \(String(format: "%.2f", removedAfter)) s after it ended"
        )
        let services =
            try JSONSerialization.jsonObject(with: Data(try lab.ppctl(["service", "list", "-o", "json"]).stdout.utf8)) as! [[String: Any]]
        let left = (services.first?["backends"] as? [[String: Any]])?.map { "\($0["address"]!):\($0["port"]!)" }
        XCTAssertEqual(left, [Lab.backendAddress2 == address ? "198.18.2.2:8080" : "198.18.2.3:8080"])
        XCTAssertTrue(log.contains("state=drained"), log)

        // Cancelling the drain adds the backend to the service again.
        try lab.ppctl(["backend", "drain", "198.18.0.10:80", drained, "--cancel"])
        try waitFor("the backend back in the service") {
            try backends("198.18.0.10:80")[drained]?["weight"] as? Int == 1
        }
        XCTAssertEqual(try state("198.18.0.10:80", drained), "up")
    }

    // MARK: - Passive detection

    func testBackendRefusingSYNsIsMarkedDownBeforeItsChecksWouldSay() throws {
        let up = try lab.listen(in: lab.backend, on: Lab.backendAddress, 8080)
        try startDaemon(
            """
            services:
              - name: web
                vip: 198.18.0.10:80
                health: {type: tcp, interval: 2s, timeout: 1s, rise: 2, fall: 3}
                backends: [{address: 198.18.2.2:8080}, {address: 198.18.2.3:8080}]
            """)
        let vip = "198.18.0.10:80", dead = "198.18.2.3:8080"
        try waitFor("the first check of the dead backend") { try backends(vip)[dead]?["lastCheck"] as? String == "refused" }
        XCTAssertEqual(try state(vip, dead), "up", "one failed check of three")
        // Clients until one is sent to the dead backend (and refused by it).
        var refusedAt: Date?
        for _ in 0..<100 where refusedAt == nil {
            do { _ = try lab.connect(from: lab.client, to: Lab.vip, 80, timeout: 2) } catch { refusedAt = Date() }
        }
        let refused = try XCTUnwrap(refusedAt, "a client was sent to the backend that refuses")
        try waitFor("the dead backend down", timeout: 6) { try state(vip, dead) == "down" }
        let took = Date().timeIntervalSince(refused)
        print("passive: a refused SYN took the backend down after \(String(format: "%.2f", took)) s (fall × interval is 6 s)")
        XCTAssertLessThan(took, 3.0, "active checks alone would need two more failures: 4 s")
        XCTAssertTrue(log.contains("event=passive"), log)
        _ = up
    }
}
