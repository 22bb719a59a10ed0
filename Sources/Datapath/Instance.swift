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

    public static let defaultPinRoot = "/sys/fs/bpf/ppctl"

    /// The instance for a network namespace (nil: the current, "default").
    public init(netns: String?, pinRoot: String? = nil) {
        let env = getenv("PPCTL_PIN_ROOT").map { String(cString: $0) }
        let root = pinRoot ?? (env?.isEmpty == false ? env! : Self.defaultPinRoot)
        name = netns ?? "default"
        directory = root + "/" + name
    }

    /// Path of a pinned map.
    public func pin(_ map: String) -> String { directory + "/" + map }

    /// True if the datapath's maps are pinned here.
    public var isAttached: Bool { access(pin("ppctl_services"), F_OK) == 0 }

    /// Makes sure bpffs is mounted at /sys/fs/bpf and the instance directory exists
    /// with mode 0700.
    public func prepareDirectory() throws {
        if ppctl_is_bpffs("/sys/fs/bpf") != 1 {
            try check(ppctl_mount_bpffs("/sys/fs/bpf"), "mounting bpffs at /sys/fs/bpf")
        }
        var path = ""
        for part in directory.split(separator: "/") {
            path += "/" + part
            if mkdir(path, 0o700) < 0 && errno != EEXIST { try check(-1, "creating \(path)") }
        }
        chmod(directory, 0o700)
    }

    /// Moves the calling thread into the network namespace /run/netns/NAME.
    public static func enterNetworkNamespace(_ name: String) throws {
        guard !name.contains("/"), !name.isEmpty else { throw DatapathError.unknownNamespace(name) }
        let rc = ppctl_enter_netns("/run/netns/" + name)
        if rc == -ENOENT { throw DatapathError.unknownNamespace(name) }
        try check(rc, "entering network namespace \(name)")
    }

    /// Runs `body` holding an exclusive lock on the instance, so that two ppctl
    /// processes never interleave their changes.
    public func withLock<T>(_ body: () throws -> T) throws -> T {
        mkdir("/run/ppctl", 0o700)
        let lockPath = "/run/ppctl/" + directory.replacingSlashes() + ".lock"
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
