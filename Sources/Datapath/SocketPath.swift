import CLibbpf
import DatapathABI
import DatapathSkeletons
import Foundation

/// A cgroup v2 directory the socket programs attach to.
public struct Cgroup: Sendable, Equatable {
    /// Its absolute path.
    public let path: String
    /// The cgroup's id (the inode of its directory), which names its link pins.
    public let id: UInt64

    /// The path as the host names it (without the /proc/PID/root that reaches it
    /// from under `ip netns exec`), for messages.
    public var displayPath: String {
        guard path.hasPrefix("/proc/"), let root = path.range(of: "/root/") else { return path }
        return "/" + path[root.upperBound...]
    }

    /// The root of the unified (v2) hierarchy: /sys/fs/cgroup/unified on a hybrid
    /// system, /sys/fs/cgroup on a pure v2 one. Under `ip netns exec`, whose private
    /// /sys has no cgroup tree, the host's through an ancestor's /proc/PID/root.
    /// Throws `.noCgroup2`.
    public static func unifiedRoot() throws -> String {
        let candidates = ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"]
        if let local = candidates.first(where: isCgroup2) { return local }
        if let host = Instance.ancestorRoot(where: { prefix in candidates.contains { isCgroup2(prefix + $0) } }),
            let path = candidates.first(where: { isCgroup2(host + $0) })
        {
            return host + path
        }
        throw DatapathError.noCgroup2
    }

    static func isCgroup2(_ path: String) -> Bool { ppctl_is_cgroup2(path) == 1 }

    /// The cgroup at `path`: absolute, or relative to the unified root; nil is the
    /// root itself. Throws `.notCgroup2` if it is not a directory of a cgroup v2
    /// hierarchy.
    public init(path given: String?) throws {
        let root = try Self.unifiedRoot()
        var path = given.map { $0.hasPrefix("/") ? $0 : root + "/" + $0 } ?? root
        // An absolute host path under `ip netns exec`: reach it the way the root was.
        if let given, given.hasPrefix("/sys/"), !Self.isCgroup2(given), root.hasPrefix("/proc/") {
            path = String(root[..<root.range(of: "/sys/")!.lowerBound]) + given
        }
        while path.count > 1 && path.hasSuffix("/") { path.removeLast() }
        var st = stat()
        guard stat(path, &st) == 0, (st.st_mode & S_IFMT) == S_IFDIR, Self.isCgroup2(path) else {
            throw DatapathError.notCgroup2(path)
        }
        self.path = path
        id = UInt64(st.st_ino)
    }
}

/// The socket path: cgroup programs that balance the connections of processes on the
/// balancer host (bpf/lb_sock.bpf.c). They read the same service maps as the tc
/// path; their attachments are bpf links pinned in the instance directory as
/// `cgroup_<id>_<hook>` (bpffs refuses dots in names), so that they outlive ppctl and `detach` finds them.
public enum SocketPath {
    /// A cgroup hook and the program attached there.
    struct Hook: Sendable {
        /// Names the link's pin (`cgroup_<id>_<name>`).
        let name: String
        /// The program, a field of the socket path's skeleton.
        let program: KeyPath<lb_sock, OpaquePointer?> & Sendable
        let type: bpf_attach_type
    }

    static let hooks = [
        Hook(name: "connect4", program: \.progs.ppctl_connect4, type: BPF_CGROUP_INET4_CONNECT),
        Hook(name: "connect6", program: \.progs.ppctl_connect6, type: BPF_CGROUP_INET6_CONNECT),
        Hook(name: "getpeername4", program: \.progs.ppctl_getpeername4, type: BPF_CGROUP_INET4_GETPEERNAME),
        Hook(name: "getpeername6", program: \.progs.ppctl_getpeername6, type: BPF_CGROUP_INET6_GETPEERNAME),
        Hook(name: "sockops", program: \.progs.ppctl_sockops, type: BPF_CGROUP_SOCK_OPS)
    ]

    /// The names of the hooks, in attach order.
    public static var hookNames: [String] { hooks.map(\.name) }

    static func linkPin(_ instance: Instance, _ cgroupID: UInt64, _ hook: Hook) -> String {
        instance.directory + "/cgroup_\(cgroupID)_\(hook.name)"
    }

    /// Loads the socket programs and attaches them to `cgroup`, over the maps of an
    /// attached instance (`Loader.attach` makes them, with or without interfaces:
    /// an instance may serve local clients only). Attaching again replaces the
    /// programs in place (bpf_link_update): sockets already connected keep their
    /// state. A failure leaves the cgroup as it was. Throws `.notAttached` if the
    /// instance has no maps.
    public static func attach(instance: Instance, cgroup: Cgroup) throws {
        guard instance.isAttached else { throw DatapathError.notAttached(directory: instance.directory) }
        try Objects.checkPinnedVersion(instance)
        try load(instance: instance, cgroup: cgroup)
    }

    private static func load(instance: Instance, cgroup: Cgroup) throws {
        Objects.configureLogging()
        let skeleton = try Objects.openSocketPath(instance: instance)
        defer { lb_sock__destroy(skeleton) }
        try check(lb_sock__load(skeleton), "loading the socket programs (PPCTL_DEBUG=1 shows the verifier log)")
        func programFD(_ program: KeyPath<lb_sock, OpaquePointer?>) -> Int32 {
            bpf_program__fd(skeleton.pointee[keyPath: program])
        }

        // Only sockets of this instance's namespace are balanced.
        let config = try BPFMap<UInt32, ppctl_sock_config>(pinnedAt: instance.pin(.sockConfig))
        try config.update(0, ppctl_sock_config(netns_cookie: try currentNetnsCookie()), mode: .any)
        // Replaces the sk_msg program a previous load attached (sockets already in the
        // sockhash keep the one they have).
        try check(
            bpf_prog_attach(
                programFD(\.progs.ppctl_sk_msg), bpf_map__fd(skeleton.pointee.maps.ppctl_sockhash),
                BPF_SK_MSG_VERDICT, 0),
            "attaching the sk_msg program to \(Maps.Name.sockhash.rawValue)")

        let cgroupFD = try check(open(cgroup.path, O_RDONLY | O_DIRECTORY | O_CLOEXEC), "opening \(cgroup.path)")
        defer { close(cgroupFD) }
        var created: [String] = []
        do {
            for hook in hooks {
                let pin = linkPin(instance, cgroup.id, hook)
                let fd = programFD(hook.program)
                let existing = bpf_obj_get(pin)
                if existing >= 0 {
                    defer { close(existing) }
                    try check(bpf_link_update(existing, fd, nil), "replacing the \(hook.name) program of \(cgroup.path)")
                } else {
                    let link = try check(
                        bpf_link_create(fd, cgroupFD, hook.type, nil),
                        "attaching \(hook.name) to \(cgroup.path)")
                    defer { close(link) }
                    try check(bpf_obj_pin(link, pin), "pinning the \(hook.name) link at \(pin)")
                    created.append(pin)
                }
            }
        } catch {
            for pin in created { unlink(pin) }  // the last reference: the link detaches
            throw error
        }
    }

    /// Moves every cgroup link pinned in the instance, and the sockhash's sk_msg
    /// program, to freshly loaded programs, which use the maps pinned now (after a
    /// migration replaced some).
    static func upgradeLinks(instance: Instance) throws {
        let ids = attachedCgroupIDs(instance)
        guard !ids.isEmpty else { return }
        let skeleton = try Objects.openSocketPath(instance: instance)
        defer { lb_sock__destroy(skeleton) }
        try check(lb_sock__load(skeleton), "loading the socket programs (PPCTL_DEBUG=1 shows the verifier log)")
        try check(
            bpf_prog_attach(
                bpf_program__fd(skeleton.pointee.progs.ppctl_sk_msg),
                bpf_map__fd(skeleton.pointee.maps.ppctl_sockhash), BPF_SK_MSG_VERDICT, 0),
            "attaching the sk_msg program to \(Maps.Name.sockhash.rawValue)")
        for id in ids {
            for hook in hooks {
                let link = bpf_obj_get(linkPin(instance, id, hook))
                guard link >= 0 else { continue }
                defer { close(link) }
                try check(
                    bpf_link_update(link, bpf_program__fd(skeleton.pointee[keyPath: hook.program]), nil),
                    "replacing the \(hook.name) program of cgroup \(id)")
            }
        }
    }

    /// Detaches the socket programs from `cgroup`. Throws `.cgroupNotAttached` if
    /// ppctl is not attached there.
    public static func detach(instance: Instance, cgroup: Cgroup) throws {
        var found = false
        for hook in hooks {
            let pin = linkPin(instance, cgroup.id, hook)
            let fd = bpf_obj_get(pin)
            guard fd >= 0 else { continue }
            found = true
            // Detach explicitly: another process may hold the link open.
            _ = bpf_link_detach(fd)
            close(fd)
            if unlink(pin) < 0 && errno != ENOENT { try check(-1, "unpinning \(pin)") }
        }
        guard found else { throw DatapathError.cgroupNotAttached(cgroup.displayPath) }
    }

    /// Detaches every cgroup link pinned in the instance (before it is unpinned).
    static func detachAll(instance: Instance) {
        for id in attachedCgroupIDs(instance) {
            for hook in hooks {
                let fd = bpf_obj_get(linkPin(instance, id, hook))
                if fd >= 0 {
                    _ = bpf_link_detach(fd)
                    close(fd)
                }
            }
        }
    }

    /// The ids of the cgroups the socket programs are attached to.
    public static func attachedCgroupIDs(_ instance: Instance) -> [UInt64] {
        guard let dir = opendir(instance.directory) else { return [] }
        defer { closedir(dir) }
        var ids: Set<UInt64> = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            let parts = name.split(separator: "_", maxSplits: 2)
            if parts.count == 3, parts[0] == "cgroup", let id = UInt64(parts[1]) { ids.insert(id) }
        }
        return ids.sorted()
    }

    /// SO_NETNS_COOKIE of the network namespace the process is in.
    static func currentNetnsCookie() throws -> UInt64 {
        let fd = try check(
            socket(AF_INET, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0),
            "opening a socket")
        defer { close(fd) }
        var cookie: UInt64 = 0
        var len = socklen_t(MemoryLayout<UInt64>.size)
        let soNetnsCookie: Int32 = 71
        try check(getsockopt(fd, SOL_SOCKET, soNetnsCookie, &cookie, &len), "reading the network namespace cookie")
        return cookie
    }
}
