import CLibbpf
import DatapathABI
import DatapathSkeletons
import Foundation

/// Loads the embedded tc program, attaches it to interfaces and detaches it.
public enum Loader {
    /// tc filter handle of ppctl's program ("PP"), fixed so that a second attach
    /// replaces the filter instead of adding one.
    public static let filterHandle: UInt32 = 0x5050
    /// tc filter priority of ppctl's program.
    public static let filterPriority: UInt32 = 0x5050
    /// The name the kernel shows for the tc ingress program (bpf/lb_tc.bpf.c), which
    /// handles remote clients and every reply (egress: the header of local clients of
    /// PROXY services). The loader finds both through the skeleton, not by name.
    public static let programName = "ppctl_tc_ingress"
    /// The connections `maxConnections` may ask the conntrack table to hold.
    public static let maxConnectionsRange = 16...4_000_000

    /// An interface the program was attached to.
    public struct Attached: Sendable {
        /// The interface's name.
        public let name: String
        /// Its index in the network namespace.
        public let ifindex: UInt32
        /// Packets leave it with bpf_redirect_peer (a veth whose peer is in another
        /// namespace), recorded as PPCTL_IFACE_PEER in ppctl_ifaces.
        public let redirectsToPeer: Bool
    }

    /// Loads (or upgrades) the datapath in `instance` and attaches it at tc ingress of
    /// every interface (clsact, handle and priority `filterHandle`/`filterPriority`,
    /// replacing what is there). Maps already pinned are reused, connection state
    /// included; the program on each interface is replaced atomically.
    /// `maxConnections` sizes the conntrack map when it is created (nil: the
    /// default, or what exists). Throws `.unknownInterface` before changing
    /// anything, `.conntrackSizeFixed`/`.incompatiblePin` if the pinned maps cannot
    /// be kept, `.system` naming the step for libbpf and kernel errors.
    /// Throws `.kernelTooOld` first on a kernel older than `Kernel.minimum`.
    /// `migrations` (default: the build's) move maps whose layout changed: every
    /// interface recorded in ppctl_ifaces and every cgroup link moves to the new
    /// programs with them, and the old pins are removed.
    /// `hashSeed` (nil: keep the pinned one, 0 on a new instance) is written to the
    /// configuration, and then `prepare` runs on the maps, before any program of this
    /// build is attached, told whether the seed changed: the control plane builds the
    /// Maglev tables there (every one for a new seed, else those missing).
    public static func attach(instance: Instance, interfaces: [String], maxConnections: Int?,
                              migrations: [Migration] = Migration.all, hashSeed: UInt32? = nil,
                              prepare: (Maps, _ seedChanged: Bool) throws -> Void = { _, _ in }) throws -> [Attached] {
        try Kernel.check()
        var indexes: [(String, UInt32)] = []
        for name in interfaces {
            let index = if_nametoindex(name)
            guard index != 0 else { throw DatapathError.unknownInterface(name) }
            indexes.append((name, index))
        }
        let pending = migrations.filter { access($0.oldPin(instance), F_OK) == 0 }
        let upgrade = instance.isAttached || !pending.isEmpty
        if upgrade { try checkPinnedVersion(instance) }
        try instance.prepareDirectory()
        configureLogging()
        var attached: [Attached] = []
        do {
            try load(instance: instance, interfaces: indexes, maxConnections: maxConnections, migrations: pending,
                     hashSeed: hashSeed, prepare: prepare) {
                attached.append($0)
            }
        } catch {
            // A first attach that fails leaves nothing behind; a failed upgrade keeps
            // the state it found (and the interfaces already moved to the new program).
            if !upgrade {
                for a in attached { _ = detachFilter(ifindex: a.ifindex) }
                try? unpinAll(instance)
            }
            throw error
        }
        return attached
    }

    /// The steps of `attach` after the checks; reports each interface attached.
    private static func load(instance: Instance, interfaces: [(String, UInt32)], maxConnections: Int?,
                             migrations: [Migration], hashSeed: UInt32?, prepare: (Maps, Bool) throws -> Void,
                             attachedTo: (Attached) -> Void) throws {
        let skeleton = try openSkeleton(BPFObjectBytes.lbTc, instance: instance, ppctl_tc_open)
        defer { lb_tc__destroy(skeleton) }

        try reconcilePins(object: skeleton.pointee.obj, conntrack: skeleton.pointee.maps.ppctl_conntrack,
                          instance: instance, maxConnections: maxConnections)
        try check(lb_tc__load(skeleton), "loading the datapath (PPCTL_DEBUG=1 shows the verifier log)")
        let programs = [(BPF_TC_INGRESS, bpf_program__fd(skeleton.pointee.progs.ppctl_tc_ingress)),
                        (BPF_TC_EGRESS, bpf_program__fd(skeleton.pointee.progs.ppctl_tc_egress))]
        // The socket path's own maps exist from the first attach, like the rest:
        // `stats` reads them and cgroup attaches find them.
        try SocketPath.createMaps(instance: instance)
        // Maps whose layout changed: their entries, converted, before the new
        // programs run.
        for migration in migrations { try migration.copy(instance: instance, replacing: true) }

        let maps = try Maps(instance)
        // A migration moves every interface the old programs run on, not only these.
        var indexes = interfaces
        if !migrations.isEmpty {
            for (index, iface) in maps.ifaces.entries() where !indexes.contains(where: { $0.1 == index }) {
                indexes.append((ifaceName(iface), index))
            }
        }
        // A new config map is all zero; an upgrade keeps the one it finds. Both
        // record the layout they were attached with.
        let pinned = maps.config.lookup(0).flatMap { value in
            withUnsafeBytes(of: value) { $0.allSatisfy { $0 == 0 } } ? nil : value
        }
        var config = pinned ?? defaultConfig()
        config.abi_version = UInt32(PPCTL_ABI_VERSION)
        let previousSeed = config.hash_seed
        if let hashSeed { config.hash_seed = hashSeed }
        try maps.config.update(0, config, mode: .any)
        // The Maglev tables, for this seed (and after a migration: at all).
        try prepare(maps, config.hash_seed != previousSeed)
        // Stop the sweeper armed by a previous program (writing the element cancels
        // its timer); the new program arms its own on the next connection.
        try maps.gc.update(0, Maps.SweeperState(), mode: .any)

        for (name, index) in indexes {
            for (point, programFD) in programs {
                try withTCHook(ifindex: index, point) { hook in
                    let created = bpf_tc_hook_create(hook)
                    if created < 0 && created != -EEXIST { try check(created, "creating the clsact qdisc on \(name)") }
                    try withZeroed(bpf_tc_opts.self) { opts in
                        opts.pointee.sz = MemoryLayout<bpf_tc_opts>.size
                        opts.pointee.prog_fd = programFD
                        opts.pointee.handle = filterHandle
                        opts.pointee.priority = filterPriority
                        opts.pointee.flags = UInt32(BPF_TC_F_REPLACE.rawValue)
                        try check(bpf_tc_attach(hook, opts), "attaching to \(name)")
                    }
                }
            }

            let peer = ppctl_iface_redirects_to_peer(name) == 1
            var iface = ppctl_iface()
            withUnsafeMutableBytes(of: &iface.name) { dst in
                let src = Array(name.utf8.prefix(15))
                dst.copyBytes(from: src)
            }
            iface.flags = peer ? UInt32(PPCTL_IFACE_PEER) : 0
            attachedTo(Attached(name: name, ifindex: index, redirectsToPeer: peer))
            try maps.ifaces.update(index, iface, mode: .any)
        }

        guard !migrations.isEmpty else { return }
        // The cgroup programs too, then what the old programs wrote meanwhile (new
        // connections), and the old pins go: nothing uses the old maps any more.
        try SocketPath.upgradeLinks(instance: instance)
        for migration in migrations {
            try migration.copy(instance: instance, replacing: false)
            if unlink(migration.oldPin(instance)) < 0 && errno != ENOENT {
                throw DatapathError.system("unpinning \(migration.from) after migrating it", errno: errno)
            }
        }
    }

    /// Detaches from the named interfaces, or, with nil, from every interface of the
    /// namespace that carries ppctl's filter (recorded in ppctl_ifaces or not), and
    /// then unpins every map and removes the instance directory. Only ppctl_ifaces is
    /// opened, so this works even when the other pinned maps no longer match this
    /// build (the way out of an incompatible upgrade). Returns the interfaces
    /// detached from. Throws `.notAttached` if there is nothing to detach,
    /// `.interfaceNotAttached` for a name not in ppctl_ifaces (before changing
    /// anything).
    public static func detach(instance: Instance, interfaces: [String]?) throws -> [String] {
        configureLogging()
        let ifaces = instance.isAttached ? try BPFMap<UInt32, ppctl_iface>(pinnedAt: instance.pin(.ifaces)) : nil
        let recorded = ifaces?.entries().map { (name: ifaceName($0.value), index: $0.key) } ?? []
        guard let interfaces else {
            var detached: [String] = []
            for (name, index) in recorded {
                let rc = detachFilter(ifindex: index)
                // Gone already (interface deleted, filter removed by hand): nothing to do.
                if rc < 0 && rc != -ENOENT && rc != -ENODEV && rc != -EINVAL { try check(rc, "detaching from \(name)") }
                try ifaces?.delete(index)
                detached.append(name)
            }
            for (name, index) in namespaceInterfaces() where !recorded.contains(where: { $0.index == index }) {
                if detachFilter(ifindex: index) == 0 { detached.append(name) }
            }
            guard ifaces != nil || !detached.isEmpty else { throw DatapathError.notAttached(directory: instance.directory) }
            SocketPath.detachAll(instance: instance)
            try unpinAll(instance)
            return detached
        }
        guard let ifaces else { throw DatapathError.notAttached(directory: instance.directory) }
        let targets = try interfaces.map { name in
            guard let entry = recorded.first(where: { $0.name == name }) else { throw DatapathError.interfaceNotAttached(name) }
            return entry
        }
        for (name, index) in targets {
            let rc = detachFilter(ifindex: index)
            if rc < 0 && rc != -ENOENT && rc != -ENODEV && rc != -EINVAL { try check(rc, "detaching from \(name)") }
            try ifaces.delete(index)
        }
        return targets.map(\.name)
    }

    /// Every interface of the network namespace the process is in.
    static func namespaceInterfaces() -> [(name: String, index: UInt32)] {
        guard let list = if_nameindex() else { return [] }
        defer { if_freenameindex(list) }
        var result: [(String, UInt32)] = []
        var entry = list
        while entry.pointee.if_index != 0, let name = entry.pointee.if_name {
            result.append((String(cString: name), entry.pointee.if_index))
            entry += 1
        }
        return result
    }

    /// Removes ppctl's filters from an interface's ingress and egress; the libbpf
    /// result of the ingress one (an egress filter may be missing: attached by an
    /// older ppctl).
    static func detachFilter(ifindex: UInt32) -> Int32 {
        var result: Int32 = 0
        for point in [BPF_TC_EGRESS, BPF_TC_INGRESS] {
            result = withTCHook(ifindex: ifindex, point) { hook in
                withZeroed(bpf_tc_opts.self) { opts in
                    opts.pointee.sz = MemoryLayout<bpf_tc_opts>.size
                    opts.pointee.handle = filterHandle
                    opts.pointee.priority = filterPriority
                    return bpf_tc_detach(hook, opts)
                }
            }
        }
        return result
    }

    /// Opens the skeleton of an embedded object (base64) with `open` (a shim of
    /// DatapathSkeletons), its maps pinned in the instance directory, and checks that
    /// every map it pins is one `Maps.Name` knows. The caller destroys it.
    static func openSkeleton<Skeleton>(
        _ base64: String, instance: Instance,
        _ open: (UnsafeRawPointer?, Int, UnsafePointer<CChar>?) -> UnsafeMutablePointer<Skeleton>?
    ) throws -> UnsafeMutablePointer<Skeleton> {
        guard let bytes = Data(base64Encoded: base64) else {
            throw DatapathError.objectMismatch("the embedded object is not valid base64")
        }
        let skeleton = try bytes.withUnsafeBytes { raw in
            try instance.directory.withCString { pinRoot in
                guard let skeleton = open(raw.baseAddress, raw.count, pinRoot) else {
                    throw DatapathError.system("opening the embedded eBPF object", errno: errno)
                }
                return skeleton
            }
        }
        return skeleton
    }

    // MARK: - Pins

    /// Before a load: libbpf reuses a pinned map only if it matches the object's
    /// definition, and fails with a bare EINVAL otherwise. Say which map and why
    /// instead, and size the conntrack map: `maxConnections` if given (it must then
    /// agree with a pinned map), else the pinned map's size, else the default.
    static func reconcilePins(object: OpaquePointer?, conntrack: OpaquePointer?, instance: Instance,
                              maxConnections: Int?) throws {
        if let conntrack, let maxConnections {
            try check(bpf_map__set_max_entries(conntrack, UInt32(2 * maxConnections)), "sizing the conntrack map")
        }
        var map = bpf_object__next_map(object, nil)
        while let m = map {
            defer { map = bpf_object__next_map(object, m) }
            let name = String(cString: bpf_map__name(m))
            // Every map the object pins has its name in Maps.Name, the one list of pins.
            if bpf_map__pin_path(m) != nil && Maps.Name(rawValue: name) == nil {
                throw DatapathError.objectMismatch("it pins map \(name), which Maps.Name does not list")
            }
            let fd = bpf_obj_get(instance.directory + "/" + name)
            guard fd >= 0 else { continue }            // not pinned yet: libbpf creates it
            defer { close(fd) }
            var info = bpf_map_info()
            var len = UInt32(MemoryLayout<bpf_map_info>.size)
            try check(bpf_obj_get_info_by_fd(fd, &info, &len), "reading the description of pinned map \(name)")
            if m == conntrack, bpf_map__max_entries(m) != info.max_entries {
                guard maxConnections == nil else {
                    throw DatapathError.conntrackSizeFixed(current: Int(info.max_entries) / 2, requested: maxConnections!)
                }
                try check(bpf_map__set_max_entries(m, info.max_entries), "sizing the conntrack map")
            }
            var differences: [String] = []
            func compare(_ what: String, _ pinned: UInt32, _ ours: UInt32) {
                if pinned != ours { differences.append("\(what) \(pinned), not \(ours)") }
            }
            compare("type", info.type, bpf_map__type(m).rawValue)
            compare("key size", info.key_size, bpf_map__key_size(m))
            compare("value size", info.value_size, bpf_map__value_size(m))
            compare("max entries", info.max_entries, bpf_map__max_entries(m))
            compare("flags", info.map_flags, bpf_map__map_flags(m))
            if !differences.isEmpty {
                throw DatapathError.incompatiblePin(map: name, differences.joined(separator: ", "))
            }
        }
    }

    /// Throws `.newerABI` if the instance was last attached by a build whose map
    /// layout is newer than this one's (its pins may have names this build does
    /// not know). A config map of another shape is left to `reconcilePins`.
    static func checkPinnedVersion(_ instance: Instance) throws {
        guard let config = try? BPFMap<UInt32, ppctl_config>(pinnedAt: instance.pin(.config)),
              let pinned = config.lookup(0), pinned.abi_version > UInt32(PPCTL_ABI_VERSION) else { return }
        throw DatapathError.newerABI(pinned: Int(pinned.abi_version), supported: Int(PPCTL_ABI_VERSION))
    }

    /// Files on /run that belong to an instance (ppctld's health report, the CLI's
    /// drain requests): gone with the instance.
    static let runFiles = ["health.json", "drains.json"]

    /// Removes every pin of the instance and its directory, and its files on /run.
    /// The maps are freed when their last user (a program on an interface, an open
    /// descriptor) goes away.
    static func unpinAll(_ instance: Instance) throws {
        for suffix in runFiles { unlink(instance.runFile(suffix)) }
        guard let dir = opendir(instance.directory) else {
            if errno == ENOENT { return }
            throw DatapathError.system("opening \(instance.directory)", errno: errno)
        }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            if name != "." && name != ".." { names.append(name) }
        }
        closedir(dir)
        for name in names where unlink(instance.directory + "/" + name) < 0 && errno != ENOENT {
            throw DatapathError.system("unpinning \(instance.directory)/\(name)", errno: errno)
        }
        if rmdir(instance.directory) < 0 && errno != ENOENT {
            throw DatapathError.system("removing \(instance.directory)", errno: errno)
        }
    }

    /// libbpf rejects option structs whose padding is not zero, and Swift does not
    /// promise to zero padding: build them in zeroed memory and set fields in place.
    static func withZeroed<T, R>(_ type: T.Type, _ body: (UnsafeMutablePointer<T>) throws -> R) rethrows -> R {
        let raw = UnsafeMutableRawPointer.allocate(byteCount: MemoryLayout<T>.size, alignment: MemoryLayout<T>.alignment)
        raw.initializeMemory(as: UInt8.self, repeating: 0, count: MemoryLayout<T>.size)
        defer { raw.deallocate() }
        return try body(raw.assumingMemoryBound(to: T.self))
    }

    /// A clsact hook (ingress or egress) on an interface.
    static func withTCHook<R>(ifindex: UInt32, _ point: bpf_tc_attach_point,
                              _ body: (UnsafeMutablePointer<bpf_tc_hook>) throws -> R) rethrows -> R {
        try withZeroed(bpf_tc_hook.self) { hook in
            hook.pointee.sz = MemoryLayout<bpf_tc_hook>.size
            hook.pointee.ifindex = Int32(ifindex)
            hook.pointee.attach_point = point
            return try body(hook)
        }
    }

    /// The name stored in an interface entry.
    public static func ifaceName(_ iface: ppctl_iface) -> String {
        withUnsafeBytes(of: iface.name) { raw in
            String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
        }
    }

    /// Defaults from ppctl_abi.h, and the namespace's own ephemeral port range (the
    /// SNAT allocator keeps out of it on the route's source address).
    public static func defaultConfig() -> ppctl_config {
        var c = ppctl_config()
        c.snat_port_min = UInt16(PPCTL_DEFAULT_SNAT_PORT_MIN)
        c.snat_port_max = UInt16(PPCTL_DEFAULT_SNAT_PORT_MAX)
        let local = localPortRange()
        c.local_port_min = local.lowerBound
        c.local_port_max = local.upperBound
        c.timeout_time_wait = UInt32(PPCTL_DEFAULT_TIMEOUT_TIME_WAIT)
        c.timeout_syn = UInt32(PPCTL_DEFAULT_TIMEOUT_SYN)
        c.timeout_established = UInt32(PPCTL_DEFAULT_TIMEOUT_EST)
        c.timeout_fin = UInt32(PPCTL_DEFAULT_TIMEOUT_FIN)
        c.timeout_close = UInt32(PPCTL_DEFAULT_TIMEOUT_CLOSE)
        c.timeout_rst = UInt32(PPCTL_DEFAULT_TIMEOUT_RST)
        c.gc_interval = UInt32(PPCTL_DEFAULT_GC_INTERVAL)
        return c
    }

    /// net.ipv4.ip_local_port_range of the current network namespace (the kernel's
    /// default when it cannot be read). IPv6 sockets use the same range.
    public static func localPortRange() -> ClosedRange<UInt16> {
        let fallback = UInt16(PPCTL_DEFAULT_LOCAL_PORT_MIN)...UInt16(PPCTL_DEFAULT_LOCAL_PORT_MAX)
        guard let text = try? String(contentsOfFile: "/proc/sys/net/ipv4/ip_local_port_range", encoding: .utf8) else {
            return fallback
        }
        let parts = text.split(whereSeparator: \.isWhitespace).compactMap { UInt16($0) }
        guard parts.count == 2, parts[0] <= parts[1] else { return fallback }
        return parts[0]...parts[1]
    }

    /// libbpf prints nothing unless PPCTL_DEBUG is set (then everything, verifier
    /// logs included, to stderr).
    static func configureLogging() {
        if getenv("PPCTL_DEBUG") != nil {
            libbpf_set_print { _, format, args in vdprintf(2, format, args!) }
        } else {
            libbpf_set_print { _, _, _ in
                0
            }
        }
    }
}
