import Datapath
import DatapathABI
import Foundation
import XCTest

/// The ECMP lab of BGPTests (docs/scale-out.md): a client behind a router that
/// learns the VIP from two balancers over BGP (bird2, BFD) and spreads flows over
/// both (ECMP, L4 hash); each balancer runs ppctld (tc on both its interfaces,
/// SNAT to its own backend-side address) and bird2; two nginx backends.
///
///     client c0 198.18.10.2 --- rc 198.18.10.1 router (bird, AS 65000)
///                                   r0 198.18.3.1
///                                        |  front bridge (namespace sw)
///                      +-----------------+-----------------+
///           lb1 f0 198.18.3.11                      lb2 f0 198.18.3.12    (ppctld + bird, AS 65001)
///           lb1 b0 198.18.4.11                      lb2 b0 198.18.4.12
///                      +-----------------+-----------------+
///                                        |  back bridge (namespace sw)
///                      backends e0 198.18.4.21 (nginx be1), 198.18.4.22 (nginx be2)
///
/// The front bridge floods unknown unicast, as a switch does: when lb1 is gone, the
/// frames the router still sends to its MAC reach lb2, whose tc program must leave
/// them alone (they are lb1's), so the lab measures what BFD and BGP do.
///
/// Every address has an IPv6 twin (2001:2:0:10::/64 client side, 2001:2:0:3::/64
/// front, 2001:2:0:4::/64 back, VIP 2001:2::10 announced as a /128 over IPv6 sessions).
///
/// Namespaces are `ppg-<pid>-<n>-{c,r,sw,lb1,lb2,be}`; each balancer's pins live
/// under a root of the lab's own. `close()` (also deinit) stops every process the
/// lab started (ppctld, bird, nginx, the load), detaches and removes the
/// namespaces, pins, lock and run files and the lab's directory, even after a
/// failure; a new lab first removes what labs of dead test processes left.
final class BGPLab {
    let client: String, router: String, switchNS: String, backends: String
    let balancers: [String]
    /// The lab's files: configurations, logs, sockets.
    let dir: String
    let pinRoot: String
    /// The processes `spawn` started, stopped by `kill` or at `close`.
    private lazy var spawned = Spawned(pinRoot: pinRoot)
    private var closed = false
    private static var counter = 0

    static let vip = "198.18.0.10"
    static let clientAddress = "198.18.10.2"
    static let routerAddress = "198.18.3.1"
    /// Per balancer: its front address (the BGP next hop) and its back address (SNAT).
    static let front = ["198.18.3.11", "198.18.3.12"]
    static let back = ["198.18.4.11", "198.18.4.12"]
    static let backendAddresses = ["198.18.4.21", "198.18.4.22"]
    static let metricsPort = 9464
    /// The same in IPv6: the VIP is announced as a /128 to the router's IPv6 address.
    static let vip6 = "2001:2::10"
    static let clientAddress6 = "2001:2:0:10::2"
    static let routerAddress6 = "2001:2:0:3::1"
    static let front6 = ["2001:2:0:3::11", "2001:2:0:3::12"]
    static let back6 = ["2001:2:0:4::11", "2001:2:0:4::12"]
    static let backendAddresses6 = ["2001:2:0:4::21", "2001:2:0:4::22"]

    init() throws {
        guard geteuid() == 0 else { throw LabError.system("integration tests need root (run scripts/test as root)", EPERM) }
        BGPLab.counter += 1
        let base = "ppg-\(getpid())-\(BGPLab.counter)"
        client = base + "-c"
        router = base + "-r"
        switchNS = base + "-sw"
        backends = base + "-be"
        balancers = [base + "-lb1", base + "-lb2"]
        dir = NSTemporaryDirectory() + base
        pinRoot = "/sys/fs/bpf/ppctl-test-\(getpid())-bgp\(BGPLab.counter)"
        if BGPLab.counter == 1 { BGPLab.removeLabsOfDeadProcesses() }
        do { try build() } catch {
            close()
            throw error
        }
    }

    deinit { close() }

    private var namespaces: [String] { [client, router, switchNS, backends] + balancers }

    private static func removeLabsOfDeadProcesses() {
        for ns in (try? FileManager.default.contentsOfDirectory(atPath: "/run/netns")) ?? [] where ns.hasPrefix("ppg-") {
            guard let pid = Int32(ns.dropFirst(4).prefix { $0.isNumber }), pid != getpid(),
                Glibc.kill(pid, 0) != 0 && errno == ESRCH
            else { continue }
            Lab.stopProcesses(inDeadLab: ns)
            let p = Process()
            p.executableURL = URL(fileURLWithPath: "/usr/sbin/ip")
            p.arguments = ["netns", "del", ns]
            try? p.run()
            p.waitUntilExit()
        }
    }

    private func build() throws {
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try sh("rm -rf \(pinRoot)")
        for ns in namespaces { try sh("ip netns del \(ns) 2>/dev/null; ip netns add \(ns) && ip -n \(ns) link set lo up") }
        let (lb1, lb2) = (balancers[0], balancers[1])
        try sh(
            """
            ip -n \(switchNS) link add front type bridge && ip -n \(switchNS) link add back type bridge &&
            ip -n \(switchNS) link set front up && ip -n \(switchNS) link set back up &&
            ip link add c0 netns \(client) type veth peer name rc netns \(router) &&
            ip link add r0 netns \(router) type veth peer name r0p netns \(switchNS) &&
            ip link add f0 netns \(lb1) type veth peer name l1f netns \(switchNS) &&
            ip link add b0 netns \(lb1) type veth peer name l1b netns \(switchNS) &&
            ip link add f0 netns \(lb2) type veth peer name l2f netns \(switchNS) &&
            ip link add b0 netns \(lb2) type veth peer name l2b netns \(switchNS) &&
            ip link add e0 netns \(backends) type veth peer name e0p netns \(switchNS) &&
            for p in r0p l1f l2f; do ip -n \(switchNS) link set $p master front up || exit 1; done &&
            for p in l1b l2b e0p; do ip -n \(switchNS) link set $p master back up || exit 1; done &&
            ip -n \(client) addr add \(Self.clientAddress)/24 dev c0 && ip -n \(client) link set c0 up &&
            ip -n \(client) route add default via 198.18.10.1 &&
            ip -n \(client) addr add \(Self.clientAddress6)/64 dev c0 nodad && ip -n \(client) -6 route add default via 2001:2:0:10::1 &&
            ip -n \(router) addr add 2001:2:0:10::1/64 dev rc nodad && ip -n \(router) addr add \(Self.routerAddress6)/64 dev r0 nodad &&
            ip -n \(router) addr add 198.18.10.1/24 dev rc && ip -n \(router) addr add \(Self.routerAddress)/24 dev r0 &&
            ip -n \(router) link set rc up && ip -n \(router) link set r0 up &&
            ip netns exec \(router) sysctl -qw net.ipv4.ip_forward=1 net.ipv4.fib_multipath_hash_policy=1 \
                net.ipv6.conf.all.forwarding=1 net.ipv6.fib_multipath_hash_policy=1 &&
            ip -n \(backends) addr add \(Self.backendAddresses[0])/24 dev e0 && ip -n \(backends) addr add \(Self.backendAddresses[1])/24 dev e0 &&
            ip -n \(backends) addr add \(Self.backendAddresses6[0])/64 dev e0 nodad &&
            ip -n \(backends) addr add \(Self.backendAddresses6[1])/64 dev e0 nodad &&
            ip -n \(backends) link set e0 up
            """)
        for (i, lb) in balancers.enumerated() {
            try sh(
                """
                ip -n \(lb) addr add \(Self.front[i])/24 dev f0 && ip -n \(lb) addr add \(Self.back[i])/24 dev b0 &&
                ip -n \(lb) link set f0 up && ip -n \(lb) link set b0 up &&
                ip -n \(lb) route add default via \(Self.routerAddress) &&
                ip -n \(lb) addr add \(Self.front6[i])/64 dev f0 nodad && ip -n \(lb) addr add \(Self.back6[i])/64 dev b0 nodad &&
                ip -n \(lb) -6 route add default via \(Self.routerAddress6) &&
                ip netns exec \(lb) sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1
                """)
        }
    }

    /// Stops the processes, detaches both balancers, removes namespaces, pins,
    /// lock and run files and the directory. Safe to call twice.
    func close() {
        guard !closed else { return }
        closed = true
        spawned.stopAll()
        for lb in balancers {
            _ = try? run([Lab.ppctlPath, "--netns", lb, "detach"], check: false)
            let instance = Instance(netns: lb, pinRoot: pinRoot)
            unlink(instance.lockPath)
            for suffix in ["health.json", "drains.json"] { unlink(instance.runFile(suffix)) }
        }
        for ns in namespaces { _ = try? sh("ip netns del \(ns) 2>/dev/null", check: false) }
        _ = try? sh("rm -rf \(pinRoot)", check: false)
        if ProcessInfo.processInfo.environment["PPCTL_KEEP_LAB_FILES"] == nil {
            try? FileManager.default.removeItem(atPath: dir)
        }
    }

    // MARK: - Processes

    @discardableResult
    func sh(_ script: String, check: Bool = true) throws -> Lab.Result { try run(["/bin/sh", "-c", script], check: check) }

    /// Runs `argv` with the lab's PPCTL_PIN_ROOT and waits; with `check`, a non-zero exit throws.
    @discardableResult
    func run(_ argv: [String], check: Bool = true) throws -> Lab.Result {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: argv[0])
        p.arguments = Array(argv.dropFirst())
        var environment = ProcessInfo.processInfo.environment
        environment["PPCTL_PIN_ROOT"] = pinRoot
        p.environment = environment
        let out = dir + "/run-\(UUID().uuidString).out"
        FileManager.default.createFile(atPath: out, contents: nil)
        defer { unlink(out) }
        let handle = FileHandle(forWritingAtPath: out)!
        p.standardOutput = handle
        p.standardError = handle
        try p.run()
        p.waitUntilExit()
        try? handle.close()
        let text = (try? String(contentsOfFile: out, encoding: .utf8)) ?? ""
        let r = Lab.Result(status: p.terminationStatus, stdout: text, stderr: "")
        if check && r.status != 0 { throw LabError.commandFailed(argv.joined(separator: " "), r.status, text) }
        return r
    }

    /// Runs `argv` in namespace `ns` and waits.
    @discardableResult
    func exec(_ ns: String, _ argv: [String], check: Bool = true) throws -> Lab.Result {
        try run(["/usr/sbin/ip", "netns", "exec", ns] + argv, check: check)
    }

    /// Starts a long-running process in `ns` (stdout and stderr appended to `log`);
    /// `close()` stops it, `kill(pid)` does earlier.
    func spawn(_ ns: String, _ argv: [String], log: String) throws -> pid_t {
        try spawned.start(ns, argv, stdout: log, stderr: log)
    }

    /// SIGTERM (SIGKILL after `grace` seconds) to a process `spawn` started; its wait status.
    @discardableResult
    func kill(_ pid: pid_t, grace: Double = 5) -> Int32 { spawned.stop(pid, grace: grace) }

    /// Waits for a process `spawn` started to exit by itself (at most `timeout`
    /// seconds, then it is killed and nil returned).
    func wait(_ pid: pid_t, timeout: Double) -> Int32? { spawned.wait(pid, timeout: timeout) }

    func waitFor(_ what: String, timeout: Double = 20, interval: Double = 0.02, _ condition: () throws -> Bool) throws {
        let deadline = Date().addingTimeInterval(timeout)
        while try !condition() {
            guard Date() < deadline else { throw LabError.timeout(what) }
            usleep(UInt32(interval * 1e6))
        }
    }

    func text(_ path: String) -> String { (try? String(contentsOfFile: path, encoding: .utf8)) ?? "" }

    /// CLOCK_MONOTONIC in seconds (Python's time.monotonic()).
    static func monotonic() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }

    // MARK: - The pieces

    /// Two nginx (one process each) on the backends' addresses, port 8080, HTTP with
    /// `proxy_protocol`: /healthz answers 200, / answers "NAME $proxy_protocol_addr $remote_addr".
    func startBackends() throws {
        for (i, address) in Self.backendAddresses.enumerated() {
            let name = "be\(i + 1)"
            try Peers.render(
                "nginx-http-echo.conf", to: "\(dir)/\(name).conf",
                [
                    "DIR": dir, "NAME": name, "BODY": "\(name) $proxy_protocol_addr $remote_addr",
                    "LISTEN": "listen \(address):8080 proxy_protocol; listen [\(Self.backendAddresses6[i])]:8080 proxy_protocol;"
                ])
            _ = try spawn(backends, ["/usr/sbin/nginx", "-c", "\(dir)/\(name).conf", "-p", dir], log: "\(dir)/\(name).out")
            try waitFor("nginx \(name) listening") {
                try exec(backends, ["ss", "-Hltn", "src \(address):8080"]).stdout.contains("LISTEN")
            }
        }
    }

    /// bird on the router: BGP with both balancers (AS 65001) and BFD 100 ms x 3,
    /// routes merged into ECMP multipath routes in the kernel.
    func startRouter() throws {
        try Peers.render(
            "bird-router.conf", to: "\(dir)/r-bird.conf",
            [
                "DIR": dir, "ROUTER_ID": Self.routerAddress, "LB1": Self.front[0], "LB2": Self.front[1],
                "LB1V6": Self.front6[0], "LB2V6": Self.front6[1]
            ])
        _ = try spawn(
            router, ["/usr/sbin/bird", "-f", "-c", "\(dir)/r-bird.conf", "-s", "\(dir)/r.ctl", "-P", "\(dir)/r.pid"],
            log: "\(dir)/r-bird.out")
    }

    /// ppctld's file for balancer `i`: one service on the VIP, both backends,
    /// HTTP checks every 200 ms, and the `bgp` section.
    func ppctldConfig(_ i: Int) -> String {
        """
        attach: {interfaces: [f0, b0], maxConnections: 16384}
        services:
          - name: web
            vip: \(Self.vip):80
            proxy: v2
            health: {type: http, path: /healthz, interval: 200ms, timeout: 500ms, rise: 2, fall: 2}
            backends:
              - {address: \(Self.backendAddresses[0]):8080}
              - {address: \(Self.backendAddresses[1]):8080}
          - name: web6
            vip: "[\(Self.vip6)]:80"
            proxy: v2
            health: {type: http, path: /healthz, interval: 200ms, timeout: 500ms, rise: 2, fall: 2}
            backends:
              - {address: "[\(Self.backendAddresses6[0])]:8080"}
              - {address: "[\(Self.backendAddresses6[1])]:8080"}
        bgp:
          localAS: 65001
          routerId: \(Self.front[i])
          holdTime: 9
          birdSocket: \(dir)/lb\(i + 1).ctl
          include: \(dir)/lb\(i + 1)-ppctld-bird.conf
          bfd: {interval: 100ms, multiplier: 3}
          peers:
            - {address: \(Self.routerAddress), as: 65000}
            - {address: "\(Self.routerAddress6)", as: 65000}
        """
    }

    /// ppctld's log of balancer `i`.
    func ppctldLog(_ i: Int) -> String { "\(dir)/lb\(i + 1)-ppctld.log" }

    /// Starts ppctld, then bird, on balancer `i`; returns (ppctld, bird) pids.
    /// bird.conf is the operator's part: the device protocol and the include.
    @discardableResult
    func startBalancer(_ i: Int) throws -> (ppctld: pid_t, bird: pid_t) {
        let lb = balancers[i], n = "lb\(i + 1)"
        try ppctldConfig(i).write(toFile: "\(dir)/\(n)-ppctld.yaml", atomically: true, encoding: .utf8)
        let ppctld = try startPPCtlD(i)
        try Peers.render(
            "bird-balancer.conf", to: "\(dir)/\(n)-bird.conf",
            [
                "DIR": dir, "NAME": n, "INCLUDE": "\(dir)/\(n)-ppctld-bird.conf"
            ])
        let bird = try spawn(
            lb,
            [
                "/usr/sbin/bird", "-f", "-c", "\(dir)/\(n)-bird.conf", "-s", "\(dir)/\(n).ctl",
                "-P", "\(dir)/\(n)-bird.pid"
            ], log: "\(dir)/\(n)-bird.out")
        return (ppctld, bird)
    }

    /// Starts ppctld on balancer `i` with its file as it is; returns once it is ready.
    func startPPCtlD(_ i: Int) throws -> pid_t {
        let n = "lb\(i + 1)", log = ppctldLog(i)
        func ready() -> Int { text(log).components(separatedBy: "event=ready").count - 1 }
        let before = ready()
        let pid = try spawn(
            balancers[i],
            [
                Lab.ppctldPath, "--config", "\(dir)/\(n)-ppctld.yaml",
                "--metrics", "127.0.0.1:\(Self.metricsPort)"
            ], log: log)
        try waitFor("ppctld of \(n) ready:\n\(text(log))") { ready() > before }
        return pid
    }

    /// The next hops of the router's route to the VIP (`ip route`): what ECMP spreads over.
    func nextHops() throws -> Set<String> {
        let out = try exec(router, ["ip", "-4", "route", "show", "\(Self.vip)/32"]).stdout
        let words = out.split(whereSeparator: { $0 == " " || $0 == "\n" || $0 == "\t" }).map(String.init)
        return Set(words.indices.filter { words[$0] == "via" && $0 + 1 < words.count }.map { words[$0 + 1] })
    }

    /// The number of next hops of the router's route to the IPv6 VIP (bird gives
    /// link-local next hops for directly connected IPv6 peers: counted, not named).
    func nextHops6() throws -> Int {
        let out = try exec(router, ["ip", "-6", "route", "show", "\(Self.vip6)/128"]).stdout
        let words = out.split(whereSeparator: { $0 == " " || $0 == "\n" || $0 == "\t" })
        return words.filter { $0 == "via" }.count
    }

    /// `ppctl_vip_announced` of the VIP on balancer `i`, from its /metrics.
    func announcedMetric(_ i: Int) throws -> Double? {
        let out = try exec(balancers[i], ["curl", "-s", "http://127.0.0.1:\(Self.metricsPort)/metrics"], check: false).stdout
        return out.split(separator: "\n").first { $0.hasPrefix("ppctl_vip_announced{vip=\"\(Self.vip)\"}") }
            .flatMap { Double($0.split(separator: " ").last ?? "") }
    }

    // MARK: - Load

    struct Connection: Decodable {
        var start: Double
        var end: Double?
        var ok: Bool
        var backend: String?
        var proxy: String?
        var snat: String?
        var error: String?
    }

    static let loadScript = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("Scripts/ecmp_load.py").path

    /// Starts Scripts/ecmp_load.py in the client namespace; `finish` waits for it.
    func startLoad(count: Int, rate: Double, timeout: Double, vip: String = BGPLab.vip) throws -> (pid: pid_t, out: String) {
        let out = "\(dir)/load-\(UUID().uuidString).json"
        let pid = try spawn(
            client,
            [
                "/usr/bin/python3", Self.loadScript, vip, "80", out, "--count", "\(count)",
                "--rate", "\(rate)", "--timeout", "\(timeout)"
            ], log: "\(dir)/load.out")
        return (pid, out)
    }

    /// The connections of a load `startLoad` started, once it has finished (at most
    /// `count/rate + timeout + 10` seconds).
    func finish(_ load: (pid: pid_t, out: String), within seconds: Double) throws -> [Connection] {
        guard wait(load.pid, timeout: seconds) == 0 else {
            throw LabError.timeout("ecmp_load.py; its output:\n\(text("\(dir)/load.out"))")
        }
        return try JSONDecoder().decode([Connection].self, from: Data(contentsOf: URL(fileURLWithPath: load.out)))
    }

    func load(count: Int, rate: Double, timeout: Double = 2, vip: String = BGPLab.vip) throws -> [Connection] {
        try finish(try startLoad(count: count, rate: rate, timeout: timeout, vip: vip), within: Double(count) / rate + timeout + 10)
    }

    /// A TCP connection from the client to the VIP, HTTP/1.1 keep-alive.
    func connectToVIP() throws -> TCP {
        let fd = ppctl_socket_in_netns("/run/netns/" + client, AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw LabError.system("socket in \(client)", -fd) }
        let conn = TCP(fd: fd, timeout: 3)
        var (ss, len) = TCP.sockaddr(Self.vip, 80)
        let rc = withUnsafePointer(to: &ss) { $0.withMemoryRebound(to: Glibc.sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, len) } }
        guard rc == 0 else { throw LabError.system("connect to \(Self.vip):80", errno) }
        return conn
    }

    /// One keep-alive request on `conn`: the body's words (NAME PROXY_ADDR REMOTE_ADDR).
    func request(_ conn: TCP) throws -> [String] {
        try conn.write("GET / HTTP/1.1\r\nHost: vip\r\n\r\n")
        var data: [UInt8] = []
        while true {
            let chunk = try conn.read()
            if chunk.isEmpty { throw LabError.system("the connection closed", ECONNRESET) }
            data += chunk
            let text = String(decoding: data, as: UTF8.self)
            if let split = text.range(of: "\r\n\r\n"), text[split.upperBound...].hasSuffix("\n") {
                return text[split.upperBound...].split(separator: " ").map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }
            }
        }
    }
}
