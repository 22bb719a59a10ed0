import DatapathABI
#if canImport(Glibc)
    import Glibc
#endif

/// One balancer: its pin directory and its lock. ppctl keeps one instance per
/// network namespace, under `<pin root>/<instance>`, where the pin root is
/// `$PPCTL_PIN_ROOT` or /sys/fs/bpf/ppctl and the instance is `default` or the
/// name given to `--netns`.
public struct Instance: Sendable {
    /// The directory the maps are pinned in.
    public let directory: String
    /// The instance's name ("default" or the network namespace).
    public let name: String
    /// The directory as seen from the host's mount namespace (names the lock).
    let hostDirectory: String

    /// The pin root when $PPCTL_PIN_ROOT is not set.
    public static let defaultPinRoot = "/sys/fs/bpf/ppctl"

    /// The instance for a network namespace. With nil, the namespace the process is
    /// in: its name if it is one of /run/netns (as under `ip netns exec NAME`), else
    /// "default". `pinRoot` overrides $PPCTL_PIN_ROOT.
    public init(netns: String?, pinRoot: String? = nil) {
        let env = getenv("PPCTL_PIN_ROOT").map { String(cString: $0) }
        let root = pinRoot ?? (env?.isEmpty == false ? env! : Self.defaultPinRoot)
        name = netns ?? Self.currentNamespaceName() ?? "default"
        hostDirectory = root + "/" + name
        directory = Self.reachable(root) + "/" + name
    }

    /// `ip netns exec` gives its command a private /sys (and no bpffs), so pins made
    /// there would vanish with the command. When /sys/fs/bpf here is not bpffs, reach
    /// the bpffs of the nearest ancestor process that lives in another mount namespace
    /// (the shell that ran `ip netns exec`) through /proc/PID/root.
    static func reachable(_ root: String) -> String {
        guard root.hasPrefix("/sys/fs/bpf"), ppctl_is_bpffs("/sys/fs/bpf") != 1 else { return root }
        return ancestorRoot { ppctl_is_bpffs($0 + "/sys/fs/bpf") == 1 }.map { $0 + root } ?? root
    }

    /// "/proc/PID/root" of the nearest ancestor process that lives in another mount
    /// namespace and for which `accepts` holds (given that prefix): the way back to
    /// the host's /sys from under `ip netns exec`. nil if there is none.
    static func ancestorRoot(where accepts: (String) -> Bool) -> String? {
        var own = stat()
        guard stat("/proc/self/ns/mnt", &own) == 0 else { return nil }
        var pid = getppid()
        for _ in 0..<16 where pid > 1 {
            var theirs = stat()
            if stat("/proc/\(pid)/ns/mnt", &theirs) == 0, theirs.st_ino != own.st_ino, accepts("/proc/\(pid)/root") {
                return "/proc/\(pid)/root"
            }
            pid = parentOf(pid)
        }
        return nil
    }

    private static func parentOf(_ pid: pid_t) -> pid_t {
        guard let f = fopen("/proc/\(pid)/stat", "re") else { return 0 }
        defer { fclose(f) }
        var buffer = [CChar](repeating: 0, count: 512)
        guard fgets(&buffer, 512, f) != nil else { return 0 }
        let line = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        // "pid (comm) state ppid ...": comm may hold spaces, so read after the last ')'.
        guard let close = line.lastIndex(of: ")") else { return 0 }
        let fields = line[line.index(after: close)...].split(separator: " ")
        return fields.count > 1 ? pid_t(fields[1]) ?? 0 : 0
    }

    /// The name under /run/netns of the network namespace this process is in.
    static func currentNamespaceName() -> String? {
        var own = stat()
        guard stat("/proc/self/ns/net", &own) == 0, let dir = opendir("/run/netns") else { return nil }
        defer { closedir(dir) }
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            if name == "." || name == ".." { continue }
            var other = stat()
            if stat("/run/netns/" + name, &other) == 0 && other.st_ino == own.st_ino && other.st_dev == own.st_dev {
                return name
            }
        }
        return nil
    }

    /// The pin root (`$PPCTL_PIN_ROOT`) as the host sees it.
    var pinRoot: String { String(hostDirectory.dropLast(name.count + 1)) }

    /// Path of a pinned map.
    public func pin(_ map: Maps.Name) -> String { directory + "/" + map.rawValue }

    /// True if the datapath's maps are pinned here.
    public var isAttached: Bool { access(pin(.services), F_OK) == 0 }

    /// The lock file of the instance: /run/ppctl/<pin directory with '/' as '_'>.lock
    /// (bpffs holds only BPF objects, so the lock lives on /run).
    public var lockPath: String { "/run/ppctl/" + hostDirectory.replacingSlashes() + ".lock" }

    /// A file of the instance on /run beside its lock, named
    /// /run/ppctl/<pin directory with '/' as '_'>.<suffix> (e.g. ppctld's health
    /// report, `health.json`).
    public func runFile(_ suffix: String) -> String { "/run/ppctl/" + hostDirectory.replacingSlashes() + "." + suffix }

    /// Makes sure bpffs is mounted at /sys/fs/bpf (mode 0700 when ppctl mounts it)
    /// and the instance directory exists with mode 0700 (libbpf pins the maps in it
    /// with mode 0600). Missing directories are created, owned by root, mode 0700.
    /// Every directory on the way must be root's, not a symbolic link, and not
    /// writable by others unless sticky (as /sys/fs/bpf is): else another user could
    /// move or remove the pins. Throws `.unsafePinPath` naming the first that is not,
    /// `.notBPFFS` (before creating anything) if the pins would not be on bpffs,
    /// `.system` if a call fails.
    public func prepareDirectory() throws {
        if !directory.hasPrefix("/proc/") && ppctl_is_bpffs("/sys/fs/bpf") != 1 {
            try check(ppctl_mount_bpffs("/sys/fs/bpf"), "mounting bpffs at /sys/fs/bpf")
        }
        try walkDirectory(creating: true)
        guard ppctl_is_bpffs(directory) == 1 else { throw DatapathError.notBPFFS(pinRoot) }
        let fd = try check(open(directory, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC), "opening \(directory)")
        defer { close(fd) }
        try check(fchmod(fd, 0o700), "making \(directory) mode 0700")
    }

    /// Checks the directories on the way to the pins that exist, as
    /// `prepareDirectory` does, creating nothing: `Maps` calls it before opening a
    /// pin. Throws `.unsafePinPath`.
    public func checkDirectory() throws { try walkDirectory(creating: false) }

    /// Walks from / to the instance directory with `lstat`, refusing a directory
    /// `unsafeReason` finds fault with; a missing one is created (mode 0700) if
    /// `creating` and its parent is on bpffs, else the walk stops there.
    private func walkDirectory(creating: Bool) throws {
        // Under `ip netns exec`, the host's tree is reached through /proc/PID/root.
        let reach = String(directory.dropLast(hostDirectory.count))
        var path = reach
        for part in hostDirectory.split(separator: "/") {
            let parent = path.isEmpty ? "/" : path
            path += "/" + part
            var st = stat()
            if lstat(path, &st) < 0 {
                guard errno == ENOENT else { throw DatapathError.system("checking \(path)", errno: errno) }
                guard creating else { return }
                guard ppctl_is_bpffs(parent) == 1 else { throw DatapathError.notBPFFS(pinRoot) }
                if mkdir(path, 0o700) < 0 && errno != EEXIST { try check(-1, "creating \(path)") }
                if lstat(path, &st) < 0 { try check(-1, "checking \(path)") }
            }
            if let why = Self.unsafeReason(st) { throw DatapathError.unsafePinPath(String(path.dropFirst(reach.count)), why) }
        }
    }

    /// Why a directory on the way to the pins (its `lstat`) lets another user
    /// change what is below it, or nil if it does not.
    static func unsafeReason(_ st: stat) -> String? {
        if st.st_mode & S_IFMT == S_IFLNK { return "it is a symbolic link" }
        if st.st_mode & S_IFMT != S_IFDIR { return "it is not a directory" }
        if st.st_uid != 0 { return "it is owned by uid \(st.st_uid), not root" }
        if st.st_mode & 0o022 != 0 && st.st_mode & S_ISVTX == 0 {
            return "others can write to it (mode \(String(st.st_mode & 0o7777, radix: 8)))"
        }
        return nil
    }

    /// Moves the calling thread into the network namespace /run/netns/NAME. Call it
    /// first, on the main thread, before any other thread exists. Throws
    /// `.unknownNamespace` if there is no such namespace.
    public static func enterNetworkNamespace(_ name: String) throws {
        guard !name.contains("/"), !name.isEmpty else { throw DatapathError.unknownNamespace(name) }
        let rc = ppctl_enter_netns("/run/netns/" + name)
        if rc == -ENOENT { throw DatapathError.unknownNamespace(name) }
        try check(rc, "entering network namespace \(name)")
    }

    /// Runs `body` holding an exclusive `flock` on `lockPath`, so that two ppctl
    /// processes never interleave their changes (the second waits for the first).
    /// Every command that writes maps or attaches holds it; readers do not.
    /// `needsPins`: throw `.notAttached` without creating the lock file when there
    /// are no pins (commands that change services).
    public func withLock<T>(needsPins: Bool = false, _ body: () throws -> T) throws -> T {
        if needsPins && !isAttached { throw DatapathError.notAttached(directory: directory) }
        mkdir("/run/ppctl", 0o700)
        let fd = try check(open(lockPath, O_RDWR | O_CREAT | O_CLOEXEC, 0o600), "opening lock \(lockPath)")
        defer { close(fd) }
        try check(flock(fd, LOCK_EX), "locking \(lockPath)")
        defer { flock(fd, LOCK_UN) }
        return try body()
    }
}

extension String {
    func replacingSlashes() -> String {
        String(self.map { $0 == "/" ? "_" : $0 })
    }
}
