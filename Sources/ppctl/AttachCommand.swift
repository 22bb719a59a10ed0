import ArgumentParser
import Balancer
import Datapath

struct Attach: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Load (or upgrade) the datapath and attach it at tc ingress of interfaces.",
        discussion: """
            Attach to every interface clients and backends are reached through. Running it again \
            upgrades the program in place: pinned maps, services and live connections are kept.
            """)

    @OptionGroup var instance: InstanceOptions

    @Option(name: .customLong("iface"), help: ArgumentHelp("An interface to attach to (repeatable).", valueName: "IF"))
    var interfaces: [String] = []

    @Option(help: "Connections the conntrack table holds (set when the table is first created).")
    var maxConns: Int?

    func validate() throws {
        guard !interfaces.isEmpty else { throw ValidationError("give at least one --iface") }
        guard Set(interfaces).count == interfaces.count else { throw ValidationError("an interface is given twice") }
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

struct Detach: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Detach the datapath; with no --iface, from everything, and unpin all state.")

    @OptionGroup var instance: InstanceOptions

    @Option(name: .customLong("iface"), help: ArgumentHelp("An interface to detach from (repeatable).", valueName: "IF"))
    var interfaces: [String] = []

    func run() throws {
        let inst = try instance.instance()
        let detached = try ppctl.run {
            try inst.withLock { try Loader.detach(instance: inst, interfaces: interfaces.isEmpty ? nil : interfaces) }
        }
        for name in detached { print("detached from \(name)") }
        if interfaces.isEmpty { print("removed \(inst.directory)") }
    }
}
