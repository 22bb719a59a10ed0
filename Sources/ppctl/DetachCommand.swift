import ArgumentParser
import Balancer
import Datapath

/// `ppctl detach`: take the datapath off interfaces; with no option, remove it.
struct Detach: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Detach the datapath; with no --iface, from everything, and unpin all state.",
        discussion: """
            With --iface, only that interface's filter goes; services and connections stay. \
            Without, ppctl detaches from every interface it attached to, unpins every map and \
            removes the instance directory: services and connection state are gone.
            """)

    @OptionGroup var instance: InstanceOptions

    @Option(name: .customLong("iface"), help: ArgumentHelp("An interface to detach from (repeatable).", valueName: "IF"))
    var interfaces: [String] = []

    func validate() throws {
        if let twice = interfaces.first(where: { name in interfaces.filter { $0 == name }.count > 1 }) {
            throw ValidationError("interface '\(twice)' is given twice")
        }
    }

    func run() throws {
        let inst = try instance.instance()
        let detached = try ppctl.run {
            try inst.withLock { try Loader.detach(instance: inst, interfaces: interfaces.isEmpty ? nil : interfaces) }
        }
        for name in detached { print("detached from \(name)") }
        if interfaces.isEmpty { print("removed \(inst.directory)") }
    }
}
