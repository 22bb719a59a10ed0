import ArgumentParser
import Balancer
import Datapath
import DatapathABI
import ProxyProtocol

/// `ppctl attach`: load or upgrade the datapath, attach it to interfaces and cgroups.
struct Attach: ParsableCommand {
    /// What `--cgroup` given without a path stands for (PPCtl.main fills it in).
    static let rootCgroup = "<unified-root>"

    static let configuration = CommandConfiguration(
        abstract: "Load (or upgrade) the datapath: at tc on interfaces, and/or on a cgroup for local clients.",
        discussion: """
            --iface: attach to every interface clients and backends are reached through (both \
            directions of a connection are handled at ingress; the egress program writes the \
            header of local clients of PROXY services: attach the interfaces towards the backends \
            too, or their header waits for their first send). --cgroup: balance the connections \
            of processes on this host in that cgroup v2 (and its descendants) at the socket \
            layer; PATH is absolute or relative to the unified hierarchy's root, and without PATH \
            it is that root. Services serve both paths alike. Running attach again upgrades the \
            programs in place: pinned maps, services and live connections are kept, and each \
            attachment is replaced atomically. The first attach creates the maps (pinned, mode \
            0600) under $PPCTL_PIN_ROOT/<instance>, mounting bpffs at /sys/fs/bpf if needed.
            """)

    @ParentCommand var root: PPCtl

    @Option(
        name: .customLong("iface"), help: ArgumentHelp("An interface to attach to (repeatable).", valueName: "IF"),
        transform: Parse.interface)
    var interfaces: [String] = []

    @Option(
        help: ArgumentHelp(
            "A cgroup v2 whose processes are balanced at the socket layer (PATH may be left out: the unified root).",
            valueName: "path"))
    var cgroup: String?

    @Option(
        help: ArgumentHelp(
            "Connections the conntrack table holds, 16...4000000 (default 131072); fixed when the table is created.",
            valueName: "N"))
    var maxConns: Int?

    @Option(
        help: ArgumentHelp(
            "The default SNAT pool of services without --snat, e.g. 198.18.2.10-198.18.2.13 (at most 16 addresses of one family); replaces the previous one.",
            valueName: "IP[-IP][,...]"), transform: Parse.snatPool)
    var snat: [IPAddress]?

    @Option(
        help: ArgumentHelp(
            "Source ports SNAT may use, MIN-MAX in 1024...65535 (default 1024-65535; on the interface's own address the namespace's ip_local_port_range is always left out).",
            valueName: "MIN-MAX"), transform: Parse.portRange)
    var snatPorts: ClosedRange<UInt16>?

    @Option(
        help: ArgumentHelp(
            "The seed of the flow hash and of the Maglev tables, 0...4294967295 (default: keep the instance's; 0 on a new one). Balancers with the same seed and services choose the same backend for a connection.",
            valueName: "N"))
    var hashSeed: UInt32?

    func validate() throws {
        guard !interfaces.isEmpty || cgroup != nil else { throw ValidationError("give at least one --iface, or --cgroup") }
        if let twice = interfaces.first(where: { name in interfaces.filter { $0 == name }.count > 1 }) {
            throw ValidationError("interface '\(twice)' is given twice")
        }
        if let maxConns, !Loader.maxConnectionsRange.contains(maxConns) {
            throw ValidationError("--max-conns \(maxConns) is not in 16...4000000")
        }
    }

    func run() throws {
        let inst = try root.instance()
        let group = try cgroup.map { path in try validated { try Cgroup(path: path == Self.rootCgroup ? nil : path) } }
        let attached = try ppctl.run {
            try inst.withLock { () throws -> [Loader.Attached] in
                let attached = try Attachment.attach(
                    inst, interfaces: interfaces, cgroup: group, maxConnections: maxConns,
                    hashSeed: hashSeed)
                if snat != nil || snatPorts != nil {
                    let maps = try Maps(inst)
                    if let snat {
                        try maps.snatPools.update(UInt32(PPCTL_SNAT_POOL_DEFAULT), SNATPool.abi(snat), mode: .any)
                    }
                    if let snatPorts { try SNATPool.setPorts(snatPorts, in: maps.config) }
                }
                return attached
            }
        }
        for a in attached {
            print("attached to \(a.name) (ifindex \(a.ifindex)\(a.redirectsToPeer ? ", veth: redirect to peer" : ""))")
        }
        if let group {
            print("attached to cgroup \(group.displayPath) (\(SocketPath.hookNames.joined(separator: ", ")), sk_msg)")
        }
    }
}
