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
    public static func attach(
        instance: Instance, interfaces: [String], maxConnections: Int?,
        migrations: [Migration] = Migration.all, hashSeed: UInt32? = nil,
        prepare: (Maps, _ seedChanged: Bool) throws -> Void = { _, _ in }
    ) throws -> [Attached] {
        try Kernel.check()
        var indexes: [(String, UInt32)] = []
        for name in interfaces {
            let index = if_nametoindex(name)
            guard index != 0 else { throw DatapathError.unknownInterface(name) }
            indexes.append((name, index))
        }
        let pending = migrations.filter { access($0.oldPin(instance), F_OK) == 0 }
        let upgrade = instance.isAttached || !pending.isEmpty
        if upgrade { try Objects.checkPinnedVersion(instance) }
        try instance.prepareDirectory()
        Objects.configureLogging()
        var attached: [Attached] = []
        do {
            try load(
                instance: instance, interfaces: indexes, maxConnections: maxConnections, migrations: pending,
                hashSeed: hashSeed, prepare: prepare
            ) {
                attached.append($0)
            }
        } catch {
            // A first attach that fails leaves nothing behind; a failed upgrade keeps
            // the state it found (and the interfaces already moved to the new program).
            if !upgrade {
                for a in attached { _ = TCFilter.detach(ifindex: a.ifindex) }
                try? Teardown.unpinAll(instance)
            }
            throw error
        }
        return attached
    }

    /// The steps of `attach` after the checks; reports each interface attached.
    private static func load(
        instance: Instance, interfaces: [(String, UInt32)], maxConnections: Int?,
        migrations: [Migration], hashSeed: UInt32?, prepare: (Maps, Bool) throws -> Void,
        attachedTo: (Attached) -> Void
    ) throws {
        let skeleton = try Objects.openSkeleton(BPFObjectBytes.lbTc, instance: instance, ppctl_tc_open)
        defer { lb_tc__destroy(skeleton) }

        try Objects.reconcilePins(
            object: skeleton.pointee.obj, conntrack: skeleton.pointee.maps.ppctl_conntrack,
            instance: instance, maxConnections: maxConnections)
        try check(lb_tc__load(skeleton), "loading the datapath (PPCTL_DEBUG=1 shows the verifier log)")
        let programs = [
            (BPF_TC_INGRESS, bpf_program__fd(skeleton.pointee.progs.ppctl_tc_ingress)),
            (BPF_TC_EGRESS, bpf_program__fd(skeleton.pointee.progs.ppctl_tc_egress))
        ]
        // The socket path's own maps exist from the first attach, like the rest:
        // `stats` reads them and cgroup attaches find them.
        try Objects.createSocketPathMaps(instance: instance)
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
                try TCFilter.attach(programFD, ifindex: index, point, name: name)
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
}
