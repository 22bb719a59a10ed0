#if canImport(Glibc)
    import Glibc
#endif

/// What went wrong below the control plane: each case says what was being done.
public enum DatapathError: Error, CustomStringConvertible, Equatable {
    /// A system or libbpf call failed with an errno.
    case system(String, errno: Int32)
    /// ppctl was not attached in this instance (no pinned maps).
    case notAttached(directory: String)
    /// A directory on the way to the pins that another user could change (it is
    /// not root's, a symbolic link, or writable by others and not sticky): the path
    /// and what is wrong with it.
    case unsafePinPath(String, String)
    /// The pin root is not on a bpffs (BPF objects can only be pinned there).
    case notBPFFS(String)
    /// An interface name that does not exist in the namespace.
    case unknownInterface(String)
    /// The interface is not one ppctl is attached to.
    case interfaceNotAttached(String)
    /// The named network namespace does not exist.
    case unknownNamespace(String)
    /// The embedded eBPF object lacks something the control plane needs.
    case objectMismatch(String)
    /// A pinned map differs from the one this datapath defines (an upgrade that
    /// changed it): the differences, e.g. "value size 96, not 104".
    case incompatiblePin(map: String, String)
    /// The pinned maps were last attached by a build with a newer map layout
    /// (PPCTL_ABI_VERSION), which this one cannot read or migrate back.
    case newerABI(pinned: Int, supported: Int)
    /// `--max-conns` asks for another conntrack size than the pinned table's.
    case conntrackSizeFixed(current: Int, requested: Int)
    /// No cgroup v2 hierarchy is mounted.
    case noCgroup2
    /// The path is not a directory of the cgroup v2 hierarchy.
    case notCgroup2(String)
    /// The socket programs are not attached to this cgroup.
    case cgroupNotAttached(String)
    /// The running kernel (its `uname -r`) is older than `Kernel.minimum`.
    case kernelTooOld(release: String, minimum: String)

    public var description: String {
        switch self {
        case .system(let what, let e): return "\(what): \(String(cString: strerror(e)))"
        case .notAttached(let dir):
            return "ppctl is not attached (no maps under \(dir)); run `ppctl attach --iface IF` (or `--cgroup`) first"
        case .unsafePinPath(let path, let why):
            return "refusing to pin under \(path): \(why); remove it (ppctl creates its pin directories itself, owned by root, mode 0700)"
        case .notBPFFS(let path): return "the pin root \(path) is not on a bpffs (choose a PPCTL_PIN_ROOT under /sys/fs/bpf)"
        case .unknownInterface(let name): return "no interface named '\(name)'"
        case .interfaceNotAttached(let name): return "ppctl is not attached to '\(name)'"
        case .unknownNamespace(let name): return "no network namespace named '\(name)' (see `ip netns list`)"
        case .objectMismatch(let what): return "the eBPF object does not match the control plane: \(what)"
        case .incompatiblePin(let map, let diff):
            return "the pinned map \(map) does not match this datapath (\(diff)); "
                + "`ppctl detach` first (this drops its services and connections)"
        case .newerABI(let pinned, let supported):
            return "the pinned maps have layout version \(pinned), newer than this ppctl's (\(supported)); "
                + "attach with the newer ppctl, or `ppctl detach` first (this drops its services and connections)"
        case .conntrackSizeFixed(let current, let requested):
            return "the conntrack table holds \(current) connections, not \(requested); it keeps its size "
                + "while attached (`ppctl detach` first, or leave out --max-conns)"
        case .noCgroup2:
            return "no cgroup v2 hierarchy at /sys/fs/cgroup/unified or /sys/fs/cgroup"
        case .notCgroup2(let path): return "'\(path)' is not a cgroup v2 directory"
        case .cgroupNotAttached(let path): return "ppctl is not attached to cgroup \(path)"
        case .kernelTooOld(let release, let minimum):
            return "Linux \(release) is too old: ppctl's datapath needs \(minimum) or later (\(Kernel.minimumReason)); "
                + "nothing was attached (\(Kernel.skipVariable)=1 skips this check for a kernel with it backported)"
        }
    }
}

/// Throws `.system` when a C call returned a negative value (errno in the result, as
/// libbpf does, or in `errno`).
@discardableResult
func check(_ rc: Int32, _ what: @autoclosure () -> String) throws -> Int32 {
    if rc < 0 { throw DatapathError.system(what(), errno: rc == -1 ? errno : -rc) }
    return rc
}
