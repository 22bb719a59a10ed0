import ArgumentParser
import Balancer
import Datapath

/// `ppctl detach`: take the datapath off interfaces; with no option, remove it.
struct Detach: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Detach the datapath; with no --iface or --cgroup, from everything, and unpin all state.",
        discussion: """
            With --iface, only that interface's filter goes; with --cgroup, only that cgroup's \
            socket programs (connections already made keep working); services and connections \
            stay. Without either, ppctl detaches from every interface and cgroup it attached to, \
            unpins every map and removes the instance directory: services and connection state \
            are gone.
            """)

    @ParentCommand var root: PPCtl

    @Option(
        name: .customLong("iface"), help: ArgumentHelp("An interface to detach from (repeatable).", valueName: "IF"),
        transform: Parse.interface)
    var interfaces: [String] = []

    @Option(
        help: ArgumentHelp(
            "A cgroup to detach the socket programs from (PATH may be left out: the unified root).",
            valueName: "path"))
    var cgroup: String?

    func validate() throws {
        if let twice = interfaces.first(where: { name in interfaces.filter { $0 == name }.count > 1 }) {
            throw ValidationError("interface '\(twice)' is given twice")
        }
    }

    func run() throws {
        let inst = try root.instance()
        let group = try cgroup.map { path in try validated { try Cgroup(path: path == Attach.rootCgroup ? nil : path) } }
        let everything = interfaces.isEmpty && group == nil
        let detached = try ppctl.run {
            try inst.withLock { () throws -> [String] in
                if let group { try SocketPath.detach(instance: inst, cgroup: group) }
                return everything || !interfaces.isEmpty
                    ? try Teardown.detach(instance: inst, interfaces: everything ? nil : interfaces) : []
            }
        }
        for name in detached { print("detached from \(name)") }
        if let group { print("detached from cgroup \(group.displayPath)") }
        if everything { print("removed \(inst.directory)") }
    }
}
