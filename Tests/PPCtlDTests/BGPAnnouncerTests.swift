import Balancer
import Foundation
import Logging
import ProxyProtocol
import XCTest
@testable import ppctld

/// BGPAnnouncer against a stand-in birdc (a shell script that records its
/// arguments and the include it was asked to load, and answers as birdc does):
/// what is written when, what is logged, the metric, retries while bird is away.
final class BGPAnnouncerTests: XCTestCase {
    var dir: String!
    var calls: String { dir + "/calls" }

    override func setUpWithError() throws {
        dir = NSTemporaryDirectory() + "ppg-\(getpid())-announcer-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try writeBirdc(answer: "Reconfigured", status: 0)
    }

    override func tearDown() {
        if let dir { try? FileManager.default.removeItem(atPath: dir) }
    }

    /// The stand-in birdc: appends "ARGS | routes in the include" to `calls`.
    func writeBirdc(answer: String, status: Int) throws {
        let script = """
            #!/bin/sh
            echo "$* | $(grep -o 'route [^ ]*' \(dir!)/include.conf | tr '\\n' ' ')" >> \(dir!)/calls
            echo "BIRD 2.0.12 ready."
            echo "Reading configuration from /etc/bird/bird.conf"
            echo "\(answer)"
            exit \(status)
            """
        let path = dir + "/birdc"
        try script.write(toFile: path + ".new", atomically: true, encoding: .utf8)
        chmod(path + ".new", 0o755)
        rename(path + ".new", path)
    }

    func config() -> BGPConfig {
        var c = BGPConfig(
            localAS: 65001, routerID: IPv4Address("198.18.3.11")!,
            peers: [BGPConfig.Peer(address: IPAddress("198.18.3.1")!, asn: 65000)])
        c.birdSocket = dir + "/bird.ctl"
        c.include = dir + "/include.conf"
        c.birdc = dir + "/birdc"
        return c
    }

    let vip = IPAddress("198.18.0.10")!, vip2 = IPAddress("198.18.0.11")!

    func lines(_ path: String) -> [String] {
        ((try? String(contentsOfFile: path, encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
    }

    func waitFor(_ what: String, _ condition: () -> Bool) throws {
        let deadline = Date().addingTimeInterval(5)
        while !condition() {
            guard Date() < deadline else { throw NSError(domain: "timeout: " + what, code: 1) }
            usleep(10_000)
        }
    }

    func testAnnouncesServingVIPsWithdrawsTheRestAndEverythingAtStop() throws {
        let log = TestLog()
        let metrics = BGPMetrics()
        let a = BGPAnnouncer(source: "f.yaml", logger: log.logger, metrics: metrics)
        a.configure(config(), declared: [vip, vip2], serving: [vip])
        try waitFor("the first announcement") { metrics.snapshot() == ["198.18.0.10": true, "198.18.0.11": false] }
        XCTAssertEqual(lines(calls), ["-s \(dir!)/bird.ctl configure | route 198.18.0.10/32 "])
        XCTAssertTrue(log.contains("event=announce", "vip=198.18.0.10"), log.text)

        // Health: the second VIP's service gets a backend up, the first loses its last.
        a.update(serving: [vip2])
        try waitFor("the change") { metrics.snapshot() == ["198.18.0.10": false, "198.18.0.11": true] }
        XCTAssertEqual(lines(calls).count, 2)
        XCTAssertEqual(lines(calls).last, "-s \(dir!)/bird.ctl configure | route 198.18.0.11/32 ")
        XCTAssertTrue(log.contains("event=withdraw", "vip=198.18.0.10", "no backend up"), log.text)
        // The same state again: nothing to tell bird.
        a.update(serving: [vip2])
        usleep(100_000)
        XCTAssertEqual(lines(calls).count, 2)

        // A reload that drops the VIP from the file.
        a.configure(config(), declared: [vip], serving: [vip, vip2])
        try waitFor("the reload") { metrics.snapshot() == ["198.18.0.10": true] }
        XCTAssertEqual(lines(calls).count, 3)
        XCTAssertEqual(lines(calls).last, "-s \(dir!)/bird.ctl configure | route 198.18.0.10/32 ")
        XCTAssertTrue(log.contains("event=withdraw", "vip=198.18.0.11", "no longer in the file"), log.text)

        // Stop: everything withdrawn before withdrawAll returns; the sessions stay.
        a.withdrawAll(signal: "SIGTERM")
        XCTAssertEqual(lines(calls).last, "-s \(dir!)/bird.ctl configure | ")
        XCTAssertTrue(log.contains("event=withdraw", "vip=198.18.0.10", "why=SIGTERM"), log.text)
        XCTAssertTrue(lines(dir + "/include.conf").contains("protocol bgp ppctl_peer_198_18_3_1 {"))
        XCTAssertEqual(metrics.snapshot(), ["198.18.0.10": false])
    }

    func testBirdAwayIsLoggedOnceAndRetriedEverySecond() throws {
        try writeBirdc(answer: "Unable to connect to server control socket (\(dir!)/bird.ctl): No such file or directory", status: 1)
        let log = TestLog()
        let metrics = BGPMetrics()
        let a = BGPAnnouncer(source: "f.yaml", logger: log.logger, metrics: metrics)
        a.configure(config(), declared: [vip], serving: [vip])
        try waitFor("two attempts") { lines(calls).count >= 2 }
        usleep(100_000)
        XCTAssertEqual(log.count("event=bgp"), 1, log.text)
        XCTAssertTrue(log.contains("Unable to connect"), log.text)
        XCTAssertEqual(metrics.snapshot(), ["198.18.0.10": false], "not announced until bird took it")
        try writeBirdc(answer: "Reconfigured", status: 0)
        try waitFor("bird back") { metrics.snapshot() == ["198.18.0.10": true] }
        XCTAssertTrue(log.contains("event=announce", "vip=198.18.0.10"), log.text)
        XCTAssertTrue(log.contains("bird took the announcements"), log.text)
    }

    func testARefusedFileIsNotTakenAsAnnounced() throws {
        try writeBirdc(answer: "/etc/bird/ppctld.conf:3:1 syntax error", status: 1)
        let log = TestLog()
        let metrics = BGPMetrics()
        let a = BGPAnnouncer(source: "f.yaml", logger: log.logger, metrics: metrics)
        a.configure(config(), declared: [vip], serving: [vip])
        try waitFor("the attempt") { lines(calls).count >= 1 }
        try waitFor("the log") { log.contains("syntax error") }
        XCTAssertEqual(metrics.snapshot(), ["198.18.0.10": false])
        XCTAssertFalse(log.contains("event=announce"), log.text)
        a.withdrawAll(signal: "SIGTERM")
    }
}

/// A swift-log handler that keeps the lines, formatted as ppctld's (key=value).
final class TestLog: @unchecked Sendable {
    private let lock = NSLock()
    private var lines: [String] = []

    var logger: Logger { Logger(label: "test") { _ in Handler(log: self) } }

    var text: String {
        lock.lock()
        defer { lock.unlock() }
        return lines.joined(separator: "\n")
    }

    func contains(_ words: String...) -> Bool { text.split(separator: "\n").contains { l in words.allSatisfy { l.contains($0) } } }

    func count(_ word: String) -> Int { text.split(separator: "\n").filter { $0.contains(word) }.count }

    func append(_ line: String) {
        lock.lock()
        lines.append(line)
        lock.unlock()
    }

    struct Handler: LogHandler {
        let log: TestLog
        var logLevel: Logger.Level = .info
        var metadata: Logger.Metadata = [:]
        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }
        func log(event: LogEvent) {
            let all = metadata.merging(event.metadata ?? [:]) { $1 }
            log.append(
                "msg=\(KeyValueLogHandler.quoted("\(event.message)")) "
                    + all.sorted { $0.key < $1.key }
                    .map { "\($0.key)=\(KeyValueLogHandler.quoted("\($0.value)"))" }.joined(separator: " "))
        }
    }
}
