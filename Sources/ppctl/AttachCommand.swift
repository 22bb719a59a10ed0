import ArgumentParser
import Balancer
import Datapath

/// `ppctl attach`: load or upgrade the datapath, attach it to interfaces.
struct Attach: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Load (or upgrade) the datapath and attach it at tc ingress of interfaces.",
        discussion: """
            Attach to every interface clients and backends are reached through (both directions \
            of a connection are handled at ingress). Running it again upgrades the program in \
            place: pinned maps, services and live connections are kept, and the program on each \
            interface is replaced atomically. The first attach creates the maps (pinned, mode \
            0600) under $PPCTL_PIN_ROOT/<instance>, mounting bpffs at /sys/fs/bpf if needed.
            """)

    @OptionGroup var instance: InstanceOptions

    @Option(name: .customLong("iface"), help: ArgumentHelp("An interface to attach to (repeatable).", valueName: "IF"))
    var interfaces: [String]

    @Option(help: ArgumentHelp(
        "Connections the conntrack table holds, 16...4000000 (default 131072); fixed when the table is created.",
        valueName: "N"))
    var maxConns: Int?

    func validate() throws {
        guard !interfaces.isEmpty else { throw ValidationError("give at least one --iface") }
        if let twice = interfaces.first(where: { name in interfaces.filter { $0 == name }.count > 1 }) {
            throw ValidationError("interface '\(twice)' is given twice")
        }
        if let bad = interfaces.first(where: { $0.isEmpty || $0.utf8.count > 15 || $0.contains("/") }) {
            throw ValidationError("'\(bad)' is not an interface name")
        }
        if let maxConns, !(16...4_000_000).contains(maxConns) {
            throw ValidationError("--max-conns \(maxConns) is not in 16...4000000")
        }
    }

    func run() throws {
        let inst = try instance.instance()
        let attached = try ppctl.run {
            try inst.withLock { try Loader.attach(instance: inst, interfaces: interfaces, maxConnections: maxConns) }
        }
        for a in attached {
            print("attached to \(a.name) (ifindex \(a.ifindex)\(a.redirectsToPeer ? ", veth: redirect to peer" : ""))")
        }
    }
}
