import Foundation
import XCTest

/// Scale-out behind a router (docs/scale-out.md): two balancers announce the VIP
/// over BGP (ppctld writes bird2's include, `bgp` section of its file), the router
/// spreads flows over both with ECMP (L4 hash), BFD takes a dead balancer out within
/// a second, a balancer without a healthy backend withdraws the VIP, and a stopped
/// ppctld withdraws everything. Lines starting `BGP-MEASURE` report what was
/// measured (BGP_REPORT.md quotes them).
final class BGPTests: XCTestCase {
    var lab: BGPLab!
    var daemons: [pid_t] = []

    override func setUpWithError() throws {
        lab = try BGPLab()
        try lab.startBackends()
        try lab.startRouter()
        daemons = [try lab.startBalancer(0).ppctld, try lab.startBalancer(1).ppctld]
        let start = BGPLab.monotonic()
        try lab.waitFor("the router's route to the VIP over both balancers\n\(diagnostics())", timeout: 40, interval: 0.1) {
            try lab.nextHops() == Set(BGPLab.front)
        }
        print(String(format: "BGP-MEASURE converged: ECMP route over both balancers %.1f s after bird started", BGPLab.monotonic() - start))
    }

    override func tearDown() {
        lab?.close()
        lab = nil
    }

    /// What to look at when the lab does not converge.
    func diagnostics() -> String {
        var out = ""
        for i in 0..<2 { out += "--- lb\(i + 1) ppctld\n" + lab.text(lab.ppctldLog(i)) }
        for name in ["r-bird.log", "lb1-bird.log", "lb1-bird.out", "lb1-ppctld-bird.conf"] {
            out += "--- \(name)\n" + String(lab.text("\(lab.dir)/\(name)").suffix(3000))
        }
        return out
    }

    /// Connections by the balancer that carried them (the SNAT address nginx saw).
    func byBalancer(_ conns: [BGPLab.Connection]) -> [String: Int] {
        Dictionary(grouping: conns.compactMap(\.snat), by: { $0 }).mapValues(\.count)
    }

    // MARK: - Spread

    func testConnectionsSpreadOverBothBalancersAndBackendsSeeTheClient() throws {
        let conns = try lab.load(count: 1000, rate: 400)
        let failed = conns.filter { !$0.ok }
        XCTAssertEqual(conns.count, 1000)
        XCTAssertEqual(failed.count, 0, "first failures: \(failed.prefix(3).map { $0.error ?? "" })")
        let spread = byBalancer(conns)
        for address in BGPLab.back {
            XCTAssertGreaterThanOrEqual(spread[address] ?? 0, 250, "each balancer carries at least 25%: \(spread)")
        }
        XCTAssertEqual(Set(spread.keys), Set(BGPLab.back), "only the balancers' SNAT addresses reach the backends")
        XCTAssertEqual(
            conns.filter { $0.ok && $0.proxy != BGPLab.clientAddress }.count, 0,
            "every backend read the client's address in the PROXY header")
        XCTAssertEqual(Set(conns.compactMap(\.backend)), ["be1", "be2"])
        for i in 1...2 {
            XCTAssertFalse(lab.text("\(lab.dir)/be\(i)-error.log").contains("broken header"), lab.text("\(lab.dir)/be\(i)-error.log"))
        }
        print(
            "BGP-MEASURE spread: 1000 connections, lb1 \(spread[BGPLab.back[0]] ?? 0), lb2 \(spread[BGPLab.back[1]] ?? 0), "
                + "be1 \(conns.filter { $0.backend == "be1" }.count), be2 \(conns.filter { $0.backend == "be2" }.count)")
    }

    func testIPv6VIPIsAnnouncedAsA128AndSpreadsToo() throws {
        try lab.waitFor("the router's IPv6 route to the VIP over both balancers", timeout: 20, interval: 0.1) {
            try lab.nextHops6() == 2
        }
        let conns = try lab.load(count: 400, rate: 400, vip: BGPLab.vip6)
        XCTAssertEqual(conns.filter { !$0.ok }.count, 0, "first failures: \(conns.filter { !$0.ok }.prefix(3).map { $0.error ?? "" })")
        let spread = byBalancer(conns)
        for address in BGPLab.back6 {
            XCTAssertGreaterThanOrEqual(spread[address] ?? 0, 100, "each balancer carries at least 25%: \(spread)")
        }
        XCTAssertEqual(
            conns.filter { $0.ok && $0.proxy != BGPLab.clientAddress6 }.count, 0,
            "every backend read the client's IPv6 address in the PROXY header")
        print(
            "BGP-MEASURE spread6: 400 connections to [\(BGPLab.vip6)]:80, lb1 \(spread[BGPLab.back6[0]] ?? 0), lb2 \(spread[BGPLab.back6[1]] ?? 0)"
        )
    }

    // MARK: - A balancer dies

    func testDeadBalancerIsRoutedAroundWithinASecondAndTheSurvivorKeepsItsConnections() throws {
        // A long-lived (keep-alive) connection that ECMP gave to lb2.
        var kept: TCP?
        for _ in 0..<64 where kept == nil {
            let c = try lab.connectToVIP()
            if try lab.request(c)[2] == BGPLab.back[1] { kept = c }
        }
        let survivor = try XCTUnwrap(kept, "no connection hashed to lb2 in 64 tries")

        // 3 s of new connections, 200 a second, each given up after 1 s; lb1 loses
        // its link to the router 1 s in (its router-side port stays up: only BFD can tell).
        let load = try lab.startLoad(count: 600, rate: 200, timeout: 1)
        usleep(1_000_000)
        let killed = BGPLab.monotonic()
        try lab.sh("ip -n \(lab.balancers[0]) link del f0")
        try lab.waitFor("the router to drop lb1 from the route", timeout: 5, interval: 0.01) {
            try lab.nextHops() == [BGPLab.front[1]]
        }
        let routeChanged = BGPLab.monotonic() - killed
        let conns = try lab.finish(load, within: 20)

        let failed = conns.filter { !$0.ok }
        let lastFailure = failed.map(\.start).max().map { $0 - killed }
        let after = conns.filter { $0.start > killed + 1 }
        XCTAssertLessThan(lastFailure ?? 0, 1.0, "new connections succeed again within 1 s of the kill")
        // Until the router drops lb1, its flows go to lb1's MAC, which the bridge now
        // floods to lb2: lb2 must not take them (they fail), or two balancers would
        // answer one SYN whenever a switch floods.
        XCTAssertGreaterThan(failed.count, 0, "lb2 took frames addressed to lb1's MAC")
        XCTAssertFalse(after.isEmpty)
        XCTAssertEqual(after.filter { !$0.ok }.count, 0, "every connection started 1 s after the kill succeeds")
        XCTAssertEqual(Set(after.compactMap(\.snat)), [BGPLab.back[1]], "through lb2")
        XCTAssertEqual(conns.filter { $0.start < killed - 1 && !$0.ok }.count, 0, "no failure before the kill")
        XCTAssertEqual(conns.filter { $0.ok && $0.proxy != BGPLab.clientAddress }.count, 0)

        // The survivor's connection did not notice.
        let words = try lab.request(survivor)
        XCTAssertEqual(words[1], BGPLab.clientAddress)
        XCTAssertEqual(words[2], BGPLab.back[1], "still through lb2")
        print(
            String(
                format: "BGP-MEASURE kill: route to lb1 removed at the router %.3f s after the link went; "
                    + "%d of %d connections failed (started from %.3f to %.3f s after the kill); "
                    + "the long-lived connection through lb2 kept working",
                routeChanged, failed.count, conns.count, failed.map(\.start).min().map { $0 - killed } ?? 0,
                lastFailure ?? 0))
    }

    // MARK: - Health withdraws, stop withdraws

    /// ISO 8601 `ts=` of the first log line holding all of `words`, as seconds since 1970.
    func time(in log: String, of words: [String], last: Bool = false) -> Double? {
        let lines = lab.text(log).split(separator: "\n").filter { line in words.allSatisfy { line.contains($0) } }
        guard let line = last ? lines.last : lines.first,
            let ts = line.split(separator: " ").first(where: { $0.hasPrefix("ts=") })
        else { return nil }
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return f.date(from: String(ts.dropFirst(3)))?.timeIntervalSince1970
    }

    func testVIPIsWithdrawnWithoutHealthyBackendsNotAnnouncedBeforeACheckPassedAndWithdrawnAtStopAndReload() throws {
        XCTAssertEqual(try lab.announcedMetric(0), 1)
        // lb1 can no longer reach the backends: its checks fail, the VIP is withdrawn.
        let lb1 = lab.balancers[0]
        let cut = BGPLab.monotonic()
        try lab.sh(BGPLab.backendAddresses.map { "ip -n \(lb1) route add blackhole \($0)/32" }.joined(separator: " && "))
        try lab.waitFor("the router to drop lb1 after its backends went down", timeout: 5, interval: 0.01) {
            try lab.nextHops() == [BGPLab.front[1]]
        }
        let routeChanged = BGPLab.monotonic() - cut
        let log = lab.ppctldLog(0)
        let down = time(in: log, of: ["event=health", "state=down"], last: true)
        let withdrawn = time(in: log, of: ["event=withdraw", "vip=\(BGPLab.vip)", "no backend up"])
        let delay = try XCTUnwrap(withdrawn) - (try XCTUnwrap(down, lab.text(log)))
        XCTAssertLessThan(delay, 1.0, "withdrawn within 1 s of the last backend going down")
        XCTAssertEqual(try lab.announcedMetric(0), 0)
        XCTAssertEqual(try lab.announcedMetric(1), 1)
        XCTAssertTrue(
            try lab.exec(lab.router, ["birdc", "-s", "\(lab.dir)/r.ctl", "show", "route", "\(BGPLab.vip)/32"])
                .stdout.contains("[lb2 "), "bird's route is lb2's")

        let conns = try lab.load(count: 200, rate: 200)
        XCTAssertEqual(conns.filter { !$0.ok }.count, 0)
        XCTAssertEqual(Set(conns.compactMap(\.snat)), [BGPLab.back[1]], "all through lb2")

        // A ppctld that starts while its backends are unreachable (they start `up`)
        // announces nothing: a checked backend counts once it passed a check.
        lab.kill(daemons[0])
        daemons[0] = try lab.startPPCtlD(0)
        var announcedAtStart = false
        let watchUntil = BGPLab.monotonic() + 1.5
        while BGPLab.monotonic() < watchUntil {
            if try lab.nextHops().contains(BGPLab.front[0]) { announcedAtStart = true }
            usleep(20_000)
        }
        XCTAssertFalse(announcedAtStart, "lb1 announced the VIP while its backends were unreachable")
        XCTAssertEqual(try lab.announcedMetric(0), 0)

        // Its backends come back: announced again.
        let healed = BGPLab.monotonic()
        try lab.sh(BGPLab.backendAddresses.map { "ip -n \(lb1) route del blackhole \($0)/32" }.joined(separator: " && "))
        try lab.waitFor("lb1 announced again", timeout: 5, interval: 0.01) { try lab.nextHops() == Set(BGPLab.front) }
        let back = BGPLab.monotonic() - healed

        // Stopping ppctld withdraws what it announced; a stopped balancer gets no traffic.
        let stopped = BGPLab.monotonic()
        lab.kill(daemons[1])
        try lab.waitFor("the router to drop lb2 after its ppctld stopped", timeout: 3, interval: 0.01) {
            try lab.nextHops() == [BGPLab.front[0]]
        }
        let stopWithdrawn = BGPLab.monotonic() - stopped
        XCTAssertTrue(lab.text(lab.ppctldLog(1)).contains("why=SIGTERM"), lab.text(lab.ppctldLog(1)))

        // A reload (SIGHUP) of a file without the service: lb1 withdraws it too.
        let file = "\(lab.dir)/lb1-ppctld.yaml"
        let without = lab.ppctldConfig(0).components(separatedBy: "\nbgp:")
        try (without[0].components(separatedBy: "services:")[0] + "services: []\nbgp:" + without[1])
            .write(toFile: file + ".new", atomically: true, encoding: .utf8)
        rename(file + ".new", file)
        let reloaded = BGPLab.monotonic()
        Glibc.kill(daemons[0], SIGHUP)
        try lab.waitFor("no route left at the router", timeout: 3, interval: 0.01) { try lab.nextHops().isEmpty }
        let reloadWithdrawn = BGPLab.monotonic() - reloaded
        XCTAssertTrue(lab.text(log).contains("no longer in the file"), lab.text(log))
        XCTAssertEqual(try lab.announcedMetric(0), nil, "a VIP the file no longer declares has no metric")
        print(
            String(
                format: "BGP-MEASURE health: route to lb1 removed %.3f s after its backends were cut off "
                    + "(withdraw logged %.3f s after the last backend went down); announced again %.3f s after they "
                    + "came back; SIGTERM of ppctld: route removed in %.3f s; SIGHUP without the service: %.3f s",
                routeChanged, delay, back, stopWithdrawn, reloadWithdrawn))
    }
}
