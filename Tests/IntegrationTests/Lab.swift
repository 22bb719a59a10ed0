import Datapath
import DatapathABI
import Foundation
import XCTest

/// A lab of network namespaces: client | balancer | backend, joined by veth pairs.
///
///     client  c0 198.18.1.2/24, 2001:2:0:1::2/64
///     lb      l0 198.18.1.1/24, 2001:2:0:1::1/64   l1 198.18.2.1/24, 2001:2:0:2::1/64
///     backend b0 198.18.2.2/24 and 198.18.2.3/24, 2001:2:0:2::2/64
///
/// Names are unique per process and lab (`ppt-<pid>-<n>-c|lb|b`); ppctl pins under a
/// root of the lab's own (`/sys/fs/bpf/ppctl-test-<pid>-<n>`, passed as
/// PPCTL_PIN_ROOT), so tests never touch a person's balancer. `close()` (also run by
/// deinit) removes the namespaces, the processes the lab started, its pins and its
/// lock file, even after a failure; a new lab first removes what labs of dead test
/// processes left behind.
///
/// Typical use:
///
///     let lab = try Lab()
///     try lab.attach()
///     try lab.ppctl(["service", "add", "\(Lab.vip):80", "--proxyv2", "--backend", "\(Lab.backendAddress):8080"])
///     let server = try lab.listen(in: lab.backend, on: Lab.backendAddress, 8080)
///     let client = try lab.connect(from: lab.client, to: Lab.vip, 80)
///     let (header, rest) = try server.accept().readHeader()
final class Lab {
    /// The namespaces' names (for `exec`, `socket(in:)`, `listen`, `connect`, `spawn`).
    let client: String, balancer: String, backend: String
    /// PPCTL_PIN_ROOT of every command the lab runs.
    let pinRoot: String
    /// The processes `spawn` started, stopped by `kill` or at `close`.
    private lazy var spawned = Spawned(pinRoot: pinRoot)
    private var cgroups: [String] = []
    private var closed = false
    private static var counter = 0

    /// Addresses for services: VIPs are on no interface (the datapath answers for
    /// them); the backend namespace has two IPv4 addresses and one IPv6.
    static let vip = "198.18.0.10"
    static let vip6 = "2001:2::10"
    static let backendAddress = "198.18.2.2"
    static let backendAddress2 = "198.18.2.3"
    static let backendAddress6 = "2001:2:0:2::2"

    /// Builds the lab. Throws (a test failure, not a skip) without root, or if a
    /// step fails (what was built is removed again).
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
        if Lab.counter == 1 { Lab.removeLabsOfDeadProcesses() }
        do { try build() } catch {
            close()
            throw error
        }
    }

    /// The balancer's pin directory (the instance is the namespace's name).
    var instanceDirectory: String { pinRoot + "/" + balancer }

    /// The balancer's lock file (see `Instance.lockPath`).
    var lockPath: String { Instance(netns: balancer, pinRoot: pinRoot).lockPath }

    /// Stops the processes still running in a namespace of a dead test run (its
    /// ppctld, nginx...: orphans once the test process crashed), by their PIDs as
    /// `ip netns pids` lists them, before the namespace goes.
    static func stopProcesses(inDeadLab ns: String) {
        let p = Process()
        let pipe = Pipe()
        p.executableURL = URL(fileURLWithPath: "/usr/sbin/ip")
        p.arguments = ["netns", "pids", ns]
        p.standardOutput = pipe
        p.standardError = FileHandle.nullDevice
        guard (try? p.run()) != nil else { return }
        let out = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        for pid in out.split(whereSeparator: \.isWhitespace).compactMap({ Int32($0) }) where pid != getpid() {
            Glibc.kill(pid, SIGKILL)
        }
    }

    /// Namespaces, pin roots and lock files of labs whose test process is gone
    /// (a crash, a killed run): their names carry the pid.
    private static func removeLabsOfDeadProcesses() {
        func deadPID(_ name: String, after prefix: String) -> Bool {
            guard name.hasPrefix(prefix), let pid = Int32(name.dropFirst(prefix.count).prefix { $0.isNumber }) else { return false }
            return pid != getpid() && Glibc.kill(pid, 0) != 0 && errno == ESRCH
        }
        let fm = FileManager.default
        for ns in (try? fm.contentsOfDirectory(atPath: "/run/netns")) ?? [] where deadPID(ns, after: "ppt-") {
            stopProcesses(inDeadLab: ns)
            _ = try? Lab.shell("ip netns del \(ns)")
        }
        for dir in (try? fm.contentsOfDirectory(atPath: "/sys/fs/bpf")) ?? [] where deadPID(dir, after: "ppctl-test-") {
            _ = try? Lab.shell("rm -rf /sys/fs/bpf/\(dir)")
        }
        for lock in (try? fm.contentsOfDirectory(atPath: "/run/ppctl")) ?? [] where deadPID(lock, after: "_sys_fs_bpf_ppctl-test-") {
            unlink("/run/ppctl/" + lock)
        }
        if let root = try? Cgroup.unifiedRoot() {
            for dir in (try? fm.contentsOfDirectory(atPath: root)) ?? [] where deadPID(dir, after: "ppctl-test-") {
                rmdir(root + "/" + dir)
            }
        }
    }

    private static func shell(_ script: String) throws {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/sh")
        p.arguments = ["-c", script]
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try p.run()
        p.waitUntilExit()
    }

    deinit { close() }

    private func build() throws {
        try sh("rm -rf \(pinRoot)")  // a crashed run of a process with the same pid
        try sh("\(Lab.labScript) up \(client) \(balancer) \(backend)")
    }

    /// Stops the processes `spawn` started, detaches ppctl, and removes the
    /// namespaces, the pin root and the lock file. Safe to call twice.
    func close() {
        guard !closed else { return }
        closed = true
        spawned.stopAll()
        _ = try? ppctl(["detach"], check: false)
        for cg in cgroups.reversed() { rmdir(cg) }
        for ns in [client, balancer, backend] { _ = try? sh("ip netns del \(ns) 2>/dev/null", check: false) }
        _ = try? sh("rm -rf \(pinRoot)", check: false)
        unlink(lockPath)
        let instance = Instance(netns: balancer, pinRoot: pinRoot)
        for suffix in ["health.json", "drains.json"] { unlink(instance.runFile(suffix)) }
    }

    // MARK: - Commands

    /// What a finished command gave.
    struct Result {
        var status: Int32
        var stdout: String
        var stderr: String
    }

    /// Runs a shell script on the host (in the test's namespaces).
    @discardableResult
    func sh(_ script: String, check: Bool = true) throws -> Result {
        try run(["/bin/sh", "-c", script], check: check)
    }

    /// Runs `argv` (an absolute path first) with PPCTL_PIN_ROOT set to the lab's and
    /// `env` added, and waits for it. With `check`, a non-zero exit throws
    /// `LabError.commandFailed` with its output.
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
        // Read stderr alongside stdout: a full pipe on either would stall the child.
        final class Box: @unchecked Sendable { var data = Data() }
        let e = Box()
        let stderrDone = DispatchSemaphore(value: 0)
        DispatchQueue.global().async {
            e.data = err.fileHandleForReading.readDataToEndOfFile()
            stderrDone.signal()
        }
        let o = out.fileHandleForReading.readDataToEndOfFile()
        stderrDone.wait()
        p.waitUntilExit()
        let r = Result(
            status: p.terminationStatus, stdout: String(decoding: o, as: UTF8.self),
            stderr: String(decoding: e.data, as: UTF8.self))
        if check && r.status != 0 {
            throw LabError.commandFailed(argv.joined(separator: " "), r.status, r.stderr + r.stdout)
        }
        return r
    }

    /// Runs `argv` inside a namespace (with `ip netns exec`, which gives it a
    /// private /sys).
    @discardableResult
    func exec(_ ns: String, _ argv: [String], check: Bool = true) throws -> Result {
        try run(["/usr/sbin/ip", "netns", "exec", ns] + argv, check: check)
    }

    /// `exec(ns, argv)`, spelled as a run somewhere.
    @discardableResult
    func run(_ argv: [String], in ns: String, check: Bool = true) throws -> Result {
        try exec(ns, argv, check: check)
    }

    /// Runs the ppctl under test on the balancer (`--netns`, the lab's pin root).
    @discardableResult
    func ppctl(_ args: [String], check: Bool = true) throws -> Result {
        try run([Lab.ppctlPath, "--netns", balancer] + args, check: check)
    }

    /// `ppctl stats -o json`, decoded: every counter by name.
    func counters() throws -> [String: UInt64] {
        let json = try ppctl(["stats", "-o", "json"]).stdout
        return try JSONDecoder().decode([String: UInt64].self, from: Data(json.utf8))
    }

    /// One counter of `ppctl stats`; throws if ppctl has no counter of that name.
    func counter(_ name: String) throws -> UInt64 {
        guard let value = try counters()[name] else { throw LabError.system("no counter named \(name) in ppctl stats", 0) }
        return value
    }

    /// Starts a long-running process in a namespace with PPCTL_PIN_ROOT set to the
    /// lab's (stdout discarded; stderr appended to the file `stderr` if given, else
    /// discarded); the lab stops it on close, or `kill(pid)` does earlier.
    func spawn(_ ns: String, _ argv: [String], stderr: String? = nil) throws -> pid_t {
        try spawned.start(ns, argv, stderr: stderr)
    }

    /// Stops a process `spawn` started (SIGTERM, then SIGKILL after `grace`
    /// seconds) and reaps it; returns its wait status.
    @discardableResult
    func kill(_ pid: pid_t, grace: Double = 5) -> Int32 { spawned.stop(pid, grace: grace) }

    /// scripts/lab.sh, which builds the namespaces of every lab (the tests', the
    /// demo's and the benchmark's).
    static let labScript = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("../../scripts/lab.sh").standardized.path

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

    /// The ppctld binary, beside ppctl.
    static var ppctldPath: String {
        URL(fileURLWithPath: ppctlPath).deletingLastPathComponent().appendingPathComponent("ppctld").path
    }

    /// Attaches ppctl on both balancer interfaces (`extra`: more attach options).
    @discardableResult
    func attach(_ extra: [String] = [], check: Bool = true) throws -> Result {
        try ppctl(["attach", "--iface", "l0", "--iface", "l1"] + extra, check: check)
    }

    /// `bpftool map dump` of one of the balancer's pinned maps.
    func dump(_ map: Maps.Name) throws -> String {
        try run(["/usr/sbin/bpftool", "map", "dump", "pinned", instanceDirectory + "/" + map.rawValue]).stdout
    }

    /// `bpftool map lookup` of one element of an array map (or a hash map keyed by
    /// a u32) of the balancer.
    func lookup(_ map: Maps.Name, _ key: UInt32) throws -> String {
        let bytes = withUnsafeBytes(of: key.littleEndian) { $0.map { String($0) } }
        return try run(
            ["/usr/sbin/bpftool", "map", "lookup", "pinned", instanceDirectory + "/" + map.rawValue, "key"] + bytes,
            check: false
        ).stdout
    }

    /// Runs several bpftool commands (each as on its command line, without
    /// "bpftool") in one process: `bpftool batch file`.
    func bpftool(batch commands: [String]) throws -> String {
        let file = NSTemporaryDirectory() + "ppctl-lab-\(getpid())-\(balancer).bpftool"
        defer { unlink(file) }
        try commands.joined(separator: "\n").write(toFile: file, atomically: true, encoding: .utf8)
        return try run(["/usr/sbin/bpftool", "batch", "file", file]).stdout
    }

    // MARK: - Cgroups

    /// A new cgroup v2 of the lab's own under the unified root
    /// (`ppctl-test-<pid>-<n>-<k>`), removed by `close()`.
    func makeCgroup() throws -> String {
        let path = try Cgroup.unifiedRoot() + "/ppctl-test-\(getpid())-\(Lab.counter)-\(cgroups.count)"
        guard mkdir(path, 0o755) == 0 || errno == EEXIST else { throw LabError.system("mkdir \(path)", errno) }
        cgroups.append(path)
        return path
    }

    /// Runs `argv` in namespace `ns` as a process that joined `cgroup` first (the
    /// cgroup programs see it; `ip netns exec` alone would leave it where ppctl's
    /// test process is).
    @discardableResult
    func run(_ argv: [String], in ns: String, cgroup: String, check: Bool = true) throws -> Result {
        try run(
            [
                "/bin/sh", "-c", "echo $$ > \"$0\"/cgroup.procs && exec \"$@\"", cgroup,
                "/usr/sbin/ip", "netns", "exec", ns
            ] + argv, check: check)
    }

    // MARK: - Sockets in namespaces

    /// A new TCP socket (blocking, close-on-exec) in namespace `ns`: the process
    /// stays where it is. See `listen`/`connect` and the `TCP` helpers.
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
