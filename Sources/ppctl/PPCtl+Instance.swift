import ArgumentParser
import Datapath
import Foundation

/// The balancer a command acts on: `ppctl [--netns NAME] COMMAND ...`. `--netns`
/// is an option of the root command (`PPCtl`), read by the balancer commands
/// through `@ParentCommand`; it may come anywhere on the line, as with `ip -n`.
extension PPCtl {
    /// Checks root and its capabilities (exit 77), enters the namespace (exit 1 if
    /// there is none), and returns the instance. Call it first in `run()`, before
    /// any thread starts.
    func instance() throws -> Instance {
        guard geteuid() == 0 else {
            printError("ppctl needs root (CAP_BPF and CAP_NET_ADMIN) for this command")
            throw ExitCode(77)
        }
        let missing = missingCapabilities()
        guard missing.isEmpty else {
            printError(
                "ppctl needs CAP_BPF and CAP_NET_ADMIN\(netns == nil ? "" : ", and CAP_SYS_ADMIN for --netns,")"
                    + " for this command; it runs without \(missing.joined(separator: ", "))")
            throw ExitCode(77)
        }
        if let netns {
            do { try Instance.enterNetworkNamespace(netns) } catch { throw fail(error) }
        }
        return Instance(netns: netns)
    }

    /// The capabilities this command needs that the process lacks (its effective
    /// set, from /proc/self/status): CAP_NET_ADMIN, CAP_BPF (CAP_SYS_ADMIN serves
    /// on kernels before 5.8), and CAP_SYS_ADMIN to enter --netns.
    func missingCapabilities() -> [String] {
        let status = (try? String(contentsOfFile: "/proc/self/status", encoding: .utf8)) ?? ""
        guard let line = status.split(separator: "\n").first(where: { $0.hasPrefix("CapEff:") }),
            let effective = UInt64(line.dropFirst("CapEff:".count).trimmingCharacters(in: .whitespaces), radix: 16)
        else { return [] }  // unknown: let the calls themselves fail
        func has(_ cap: UInt64) -> Bool { effective & (1 << cap) != 0 }
        let netAdmin: UInt64 = 12, sysAdmin: UInt64 = 21, bpf: UInt64 = 39
        var missing: [String] = []
        if !has(bpf) && !has(sysAdmin) { missing.append("CAP_BPF") }
        if !has(netAdmin) { missing.append("CAP_NET_ADMIN") }
        if netns != nil && !has(sysAdmin) { missing.append("CAP_SYS_ADMIN") }
        return missing
    }

    /// Refuses `--netns` for a command that works on no balancer (`header ...`).
    func refuseNetns(_ command: String) throws {
        if netns != nil { throw ValidationError("--netns does not apply to `ppctl \(command)`") }
    }
}
