import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// The long-running processes a lab starts in its namespaces (ppctld, nginx, bird,
/// HAProxy...), with PPCTL_PIN_ROOT set to the lab's pin root: each stopped by its PID
/// (SIGTERM, then SIGKILL after a grace period) and reaped, all of them when the lab
/// closes. Shared by `Lab` and `BGPLab`.
final class Spawned {
    private(set) var pids: [pid_t] = []
    private let pinRoot: String

    init(pinRoot: String) { self.pinRoot = pinRoot }

    /// Starts `argv` in namespace `ns` (with `ip netns exec`); its stdout and stderr
    /// appended to the files given, else discarded. Returns its PID.
    func start(_ ns: String, _ argv: [String], stdout: String? = nil, stderr: String? = nil) throws -> pid_t {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/sbin/ip")
        p.arguments = ["netns", "exec", ns] + argv
        var environment = ProcessInfo.processInfo.environment
        environment["PPCTL_PIN_ROOT"] = pinRoot
        p.environment = environment
        let out = try stdout.map(Self.appending) ?? FileHandle.nullDevice
        let err = try stderr.map { $0 == stdout ? out : try Self.appending($0) } ?? FileHandle.nullDevice
        p.standardOutput = out
        p.standardError = err
        try p.run()
        pids.append(p.processIdentifier)
        return p.processIdentifier
    }

    /// Stops a process `start` started (SIGTERM, SIGKILL after `grace` seconds) and
    /// reaps it; its wait status, or -1 if it is not one of these.
    @discardableResult
    func stop(_ pid: pid_t, grace: Double = 5) -> Int32 {
        guard let i = pids.firstIndex(of: pid) else { return -1 }
        pids.remove(at: i)
        Glibc.kill(pid, SIGTERM)
        return Self.reap(pid, within: grace) ?? -1
    }

    /// Waits for a process `start` started to exit by itself; after `timeout` seconds
    /// it is killed and nil returned.
    func wait(_ pid: pid_t, timeout: Double) -> Int32? {
        pids.removeAll { $0 == pid }
        return Self.reap(pid, within: timeout)
    }

    /// Stops every process still running: SIGTERM to all, SIGKILL to those still
    /// there after `grace` seconds.
    func stopAll(grace: Double = 5) {
        for pid in pids { Glibc.kill(pid, SIGTERM) }
        let deadline = Date().addingTimeInterval(grace)
        for pid in pids { _ = Self.reap(pid, within: max(0, deadline.timeIntervalSinceNow)) }
        pids = []
    }

    /// The wait status of `pid` once it exits; nil if it had to be killed after `seconds`.
    private static func reap(_ pid: pid_t, within seconds: Double) -> Int32? {
        var status: Int32 = 0
        let deadline = Date().addingTimeInterval(seconds)
        while waitpid(pid, &status, WNOHANG) == 0 {
            if Date() > deadline {
                Glibc.kill(pid, SIGKILL)
                waitpid(pid, &status, 0)
                return nil
            }
            usleep(10_000)
        }
        return status
    }

    private static func appending(_ path: String) throws -> FileHandle {
        if !FileManager.default.fileExists(atPath: path) { FileManager.default.createFile(atPath: path, contents: nil) }
        guard let handle = FileHandle(forWritingAtPath: path) else { throw LabError.system("open \(path)", errno) }
        handle.seekToEndOfFile()
        return handle
    }
}
