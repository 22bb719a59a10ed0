import DatapathABI
import Foundation
import XCTest

/// A lab of network namespaces: client | balancer | backend, joined by veth pairs.
///
///     client  c0 198.18.1.2/24, 2001:2:0:1::2/64
///     lb      l0 198.18.1.1/24, 2001:2:0:1::1/64   l1 198.18.2.1/24, 2001:2:0:2::1/64
///     backend b0 198.18.2.2/24 and 198.18.2.3/24, 2001:2:0:2::2/64
///
/// Names are unique per process and lab; `close()` (also run by deinit) removes the
/// namespaces, the processes the lab started and its pin root, even after a failure.
final class Lab {
    let client: String, balancer: String, backend: String
    let pinRoot: String
    private var pids: [pid_t] = []
    private var closed = false
    private static var counter = 0

    static let vip = "198.18.0.10"
    static let vip6 = "2001:2::10"
    static let backendAddress = "198.18.2.2"
    static let backendAddress2 = "198.18.2.3"
    static let backendAddress6 = "2001:2:0:2::2"

    init() throws {
        guard geteuid() == 0 else {
            // A failure, not a skip: scripts/test runs as root, and a run where these
            // tests did not run is not a pass.
            throw LabError.system("integration tests need root (run scripts/test as root)", EPERM)
        }
        Lab.counter += 1
        let base = "ppt-\(getpid())-\(Lab.counter)"
        client = base + "-c"
        balancer = base + "-lb"
        backend = base + "-b"
        pinRoot = "/sys/fs/bpf/ppctl-test-\(getpid())-\(Lab.counter)"
        do { try build() } catch { close(); throw error }
    }

    deinit { close() }

    private func build() throws {
        for ns in [client, balancer, backend] {
            try sh("ip netns del \(ns) 2>/dev/null; ip netns add \(ns) && ip -n \(ns) link set lo up")
        }
        try sh("""
            ip link add c0 netns \(client) type veth peer name l0 netns \(balancer) &&
            ip link add l1 netns \(balancer) type veth peer name b0 netns \(backend) &&
            ip -n \(client) addr add 198.18.1.2/24 dev c0 && ip -n \(client) addr add 2001:2:0:1::2/64 dev c0 nodad &&
            ip -n \(balancer) addr add 198.18.1.1/24 dev l0 && ip -n \(balancer) addr add 2001:2:0:1::1/64 dev l0 nodad &&
            ip -n \(balancer) addr add 198.18.2.1/24 dev l1 && ip -n \(balancer) addr add 2001:2:0:2::1/64 dev l1 nodad &&
            ip -n \(backend) addr add 198.18.2.2/24 dev b0 && ip -n \(backend) addr add 198.18.2.3/24 dev b0 &&
            ip -n \(backend) addr add 2001:2:0:2::2/64 dev b0 nodad &&
            ip -n \(client) link set c0 up && ip -n \(balancer) link set l0 up &&
            ip -n \(balancer) link set l1 up && ip -n \(backend) link set b0 up &&
            ip -n \(client) route add default via 198.18.1.1 && ip -n \(client) -6 route add default via 2001:2:0:1::1 &&
            ip -n \(backend) route add default via 198.18.2.1 && ip -n \(backend) -6 route add default via 2001:2:0:2::1 &&
            ip netns exec \(balancer) sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1
            """)
    }

    func close() {
        guard !closed else { return }
        closed = true
        for pid in pids { kill(pid, SIGTERM) }
        for pid in pids { var status: Int32 = 0; waitpid(pid, &status, 0) }
        _ = try? ppctl(["detach"], check: false)
        for ns in [client, balancer, backend] { _ = try? sh("ip netns del \(ns) 2>/dev/null", check: false) }
        _ = try? sh("rm -rf \(pinRoot)", check: false)
    }

    // MARK: - Commands

    struct Result {
        var status: Int32
        var stdout: String
        var stderr: String
    }

    @discardableResult
    func sh(_ script: String, check: Bool = true) throws -> Result {
        try run(["/bin/sh", "-c", script], check: check)
    }

    @discardableResult
    func run(_ argv: [String], env: [String: String] = [:], check: Bool = true) throws -> Result {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: argv[0])
        p.arguments = Array(argv.dropFirst())
        var environment = ProcessInfo.processInfo.environment
        environment["PPCTL_PIN_ROOT"] = pinRoot
        for (k, v) in env { environment[k] = v }
        p.environment = environment
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        try p.run()
        let o = out.fileHandleForReading.readDataToEndOfFile()
        let e = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        let r = Result(status: p.terminationStatus, stdout: String(decoding: o, as: UTF8.self),
                       stderr: String(decoding: e, as: UTF8.self))
        if check && r.status != 0 {
            throw LabError.commandFailed(argv.joined(separator: " "), r.status, r.stderr + r.stdout)
        }
        return r
    }

    /// Runs `argv` inside a namespace.
    @discardableResult
    func exec(_ ns: String, _ argv: [String], check: Bool = true) throws -> Result {
        try run(["/usr/sbin/ip", "netns", "exec", ns] + argv, check: check)
    }

    /// Runs the ppctl under test on the balancer (`--netns`, the lab's pin root).
    @discardableResult
    func ppctl(_ args: [String], check: Bool = true) throws -> Result {
        try run([Lab.ppctlPath, "--netns", balancer] + args, check: check)
    }

    /// Starts a long-running process in a namespace; the lab stops it on close.
    func spawn(_ ns: String, _ argv: [String]) throws -> pid_t {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/sbin/ip")
        p.arguments = ["netns", "exec", ns] + argv
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try p.run()
        pids.append(p.processIdentifier)
        return p.processIdentifier
    }

    /// The ppctl binary next to the test bundle (override with PPCTL_BIN).
    static var ppctlPath: String {
        if let bin = ProcessInfo.processInfo.environment["PPCTL_BIN"] { return bin }
        var dir = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        for _ in 0..<5 {
            let candidate = dir.appendingPathComponent("ppctl").path
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
            dir = dir.deletingLastPathComponent()
        }
        for b in Bundle.allBundles {
            let candidate = b.bundleURL.deletingLastPathComponent().appendingPathComponent("ppctl").path
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        return ".build/debug/ppctl"
    }

    /// Attaches ppctl on both balancer interfaces.
    func attach(_ extra: [String] = []) throws {
        try ppctl(["attach", "--iface", "l0", "--iface", "l1"] + extra)
    }

    // MARK: - Sockets in namespaces

    func socket(in ns: String, family: Int32 = AF_INET) throws -> Int32 {
        let fd = ppctl_socket_in_netns("/run/netns/" + ns, family, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw LabError.system("socket in \(ns)", -fd) }
        return fd
    }
}

enum LabError: Error, CustomStringConvertible {
    case commandFailed(String, Int32, String)
    case system(String, Int32)
    case timeout(String)

    var description: String {
        switch self {
        case .commandFailed(let c, let s, let o): return "`\(c)` exited \(s): \(o)"
        case .system(let what, let e): return "\(what): \(String(cString: strerror(e)))"
        case .timeout(let what): return "timed out: \(what)"
        }
    }
}
