import ArgumentParser
import Datapath
import Foundation

/// Options every balancer command takes.
struct InstanceOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp(
        "Act on the balancer in network namespace /run/netns/NAME (ppctl enters it itself; its pins are kept per namespace).",
        valueName: "name"))
    var netns: String?

    /// Checks root (exit 77), enters the namespace (exit 1 if there is none), and
    /// returns the instance. Call it first in `run()`, before any thread starts.
    func instance() throws -> Instance {
        guard geteuid() == 0 else {
            printError("ppctl needs root (CAP_BPF and CAP_NET_ADMIN) for this command")
            throw ExitCode(77)
        }
        if let netns {
            do { try Instance.enterNetworkNamespace(netns) } catch { throw fail(error) }
        }
        return Instance(netns: netns)
    }
}
